"""`AlgebraConv1d/2d/3d`: convolutions over an algebra, weight on the left at every tap.

    conv = AlgebraConv2d(in_channels, out_channels, kernel_size, algebra="M2R", stride=1, padding=0,
                         dilation=1, groups=1, bias=True, padding_mode="zeros", method=None)
    y = conv(x)             # x (N, in_channels * d, H, W) -> (N, out_channels * d, H', W')

Channels are counted in algebra elements; weight (out_channels, in_channels // groups, *kernel_size, d),
bias (out_channels, d).  The other arguments mirror torch.nn.ConvNd (padding may be an int, a tuple,
'valid' or 'same'; padding_mode 'zeros', 'reflect', 'replicate' or 'circular').
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .. import functional as AF
from .linear import AlgebraLayerMixin

__all__ = ["AlgebraConvNd", "AlgebraConv1d", "AlgebraConv2d", "AlgebraConv3d", "add_conv_parameters",
           "check_channel_args"]


def check_channel_args(cls: str, in_channels, out_channels, groups, algebra) -> None:
    """Validate a conv layer's channel counts (algebra elements), groups and the algebra's position."""
    for label, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{cls}: {label} must be a positive int (channels count algebra elements), got {v!r}")
    if isinstance(algebra, (int, tuple, list)) and not isinstance(algebra, bool):
        raise TypeError(f"{cls}: the 4th argument is the algebra (a name such as 'H' or an Algebra), got "
                        f"{algebra!r}; pass stride etc. by keyword, e.g. {cls}(4, 8, 3, algebra='H', stride=2)")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{cls}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                         f"divisible by groups ({groups})")


def add_conv_parameters(layer: nn.Module, in_channels: int, out_channels: int, groups: int, bias: bool, init,
                        device, dtype, transposed: bool = False) -> None:
    """Give a conv layer (algebra set up, kernel_size set) its channels, groups, `init`, weight
    (out, in // groups, *kernel, d) or, transposed, (in, out // groups, *kernel, d), bias (out, d) or None,
    error label, and initialise them with its reset_parameters()."""
    d = layer.algebra.dim
    factory = {"device": device, "dtype": dtype}
    layer.in_channels, layer.out_channels, layer.groups, layer.init = in_channels, out_channels, groups, init
    first, second = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
    layer.weight = nn.Parameter(torch.empty(first, second, *layer.kernel_size, d, **factory))
    if bias:
        layer.bias = nn.Parameter(torch.empty(out_channels, d, **factory))
    else:
        layer.register_parameter("bias", None)
    layer._who = (f"{type(layer).__name__}(in_channels={in_channels}, out_channels={out_channels}, "
                  f"kernel_size={layer.kernel_size}, algebra={layer.algebra.name})")
    layer.reset_parameters()


class AlgebraConvNd(AlgebraLayerMixin, nn.Module):
    _nd = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, algebra, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", method: str | None = None,
                 device=None, dtype=None, init: Callable | None = None) -> None:
        super().__init__()
        nd = self._nd
        cls = type(self).__name__
        check_channel_args(cls, in_channels, out_channels, groups, algebra)
        AF.check_padding_mode(padding_mode, cls)
        self._setup_algebra(algebra, method, cls)
        self.kernel_size = AF.ntuple(kernel_size, nd, "kernel_size", cls)
        self.stride = AF.ntuple(stride, nd, "stride", cls)
        self.dilation = AF.ntuple(dilation, nd, "dilation", cls)
        self.padding = AF.conv_padding(padding, nd, self.stride, cls)
        self.padding_mode = padding_mode
        add_conv_parameters(self, in_channels, out_channels, groups, bias, init, device, dtype)

    def reset_parameters(self) -> None:
        self._reset_parameters(self.in_channels // self.groups * math.prod(self.kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return AF.conv_impl(x, self.weight, self.bias, self.algebra, self._nd, self.stride, self.padding,
                            self.dilation, self.groups, self.padding_mode, self.method, self._who)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"algebra={self.algebra.name}, method={self.method or 'default (' + AF.get_default_method() + ')'}")
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class AlgebraConv1d(AlgebraConvNd):
    """1-D algebra convolution: (N, in_channels*d, L) -> (N, out_channels*d, L'); see the module docstring."""

    _nd = 1


class AlgebraConv2d(AlgebraConvNd):
    """2-D algebra convolution: (N, in_channels*d, H, W) -> (N, out_channels*d, H', W'); see the module docstring."""

    _nd = 2


class AlgebraConv3d(AlgebraConvNd):
    """3-D algebra convolution: (N, in_channels*d, D, H, W) -> (N, out_channels*d, D', H', W')."""

    _nd = 3
