"""Algebra layers for training code: `from runtime.layers import AlgebraLinear`.

Features are counted in algebra elements; tensors use the element-major layout of docs/design.md (component k
of element c at index c*d + k), and weights are the left factor.
"""
from .norm import AlgebraBatchNorm1d, AlgebraBatchNorm2d, AlgebraBatchNorm3d, AlgebraLayerNorm  # noqa: E402
from .activation import ModReLU, NormGatedActivation, SplitActivation  # noqa: E402
from .dropout import AlgebraDropout  # noqa: E402
from .lift import AlgebraLift, AlgebraReadout  # noqa: E402
from .pool import (AlgebraAdaptiveAvgPool1d, AlgebraAdaptiveAvgPool2d, AlgebraAdaptiveAvgPool3d,  # noqa: E402
                   AlgebraAdaptiveMaxPool1d, AlgebraAdaptiveMaxPool2d, AlgebraAdaptiveMaxPool3d,
                   AlgebraAvgPool1d, AlgebraAvgPool2d, AlgebraAvgPool3d,
                   AlgebraMaxPool1d, AlgebraMaxPool2d, AlgebraMaxPool3d)
from .linear import AlgebraLinear  # noqa: E402
from .conv import AlgebraConv1d, AlgebraConv2d, AlgebraConv3d  # noqa: E402
from .conv_transpose import AlgebraConvTranspose1d, AlgebraConvTranspose2d, AlgebraConvTranspose3d  # noqa: E402
from .recurrent import (AlgebraGRU, AlgebraGRUCell, AlgebraLSTM, AlgebraLSTMCell, AlgebraRNN,  # noqa: E402
                        AlgebraRNNCell)
from .groupnorm import (AlgebraGroupNorm, AlgebraInstanceNorm1d, AlgebraInstanceNorm2d,  # noqa: E402
                        AlgebraInstanceNorm3d)
from .attention import AlgebraMultiheadAttention  # noqa: E402
from .transformer import (AlgebraTransformerDecoder, AlgebraTransformerDecoderLayer,  # noqa: E402
                          AlgebraTransformerEncoder, AlgebraTransformerEncoderLayer)
from .rotation import (AlgebraRotationConv1d, AlgebraRotationConv2d, AlgebraRotationConv3d,  # noqa: E402
                       AlgebraRotationLinear)
