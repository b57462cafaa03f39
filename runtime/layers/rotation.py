"""Rotation ("sandwich") layers: y_o = sum_i w_oi x_i w̄_oi over an algebra with an anti-involution.

    layer = AlgebraRotationLinear(in_features, out_features, algebra="H", normalize=True)
    y = layer(x)                         # (..., in_features * 4) -> (..., out_features * 4)
    conv = AlgebraRotationConv2d(8, 16, 3, algebra="H", padding=1)     # (N, 8*4, H, W) -> (N, 16*4, H, W)

w̄ is the algebra's anti-involution (`runtime.involution`: conjugation for C and H, reversion for Clifford
algebras, transposition for M_n(R), or ``involution=`` a (d,) sign vector or (d, d) matrix).  For a unit
quaternion w, x -> w x w̄ rotates the pure part of x (the 3 x 3 rotation matrix of w) and keeps its real
part; in general x -> w x w̄ is the real d x d matrix M(w) = R(w̄) L(w), quadratic in w.  With
``normalize=True`` every term is divided by |w|² (the sum of the squared components, plus eps), so each is a
pure rotation for quaternions, and a learnable real scale per weight element (out, in, *kernel),
initialised to 1 / sqrt(fan_in), sets the magnitude (as speechbrain's quaternion layers with rotation=True).

Computation: the (out * d, in * d) real matrix of blocks M(w_oi) (per tap for convolutions) is built from the
structure tensor each forward pass and applied by one F.linear / F.convNd, so gradients are exact through
autograd (second order too) and the cost is the block method's d² real multiply-adds per element pair
(`runtime.counting` reports them as real MACs; building M is weight-side, O(d³) per weight element).  The
product is (w x) w̄: for associative and flexible algebras that is also w (x w̄); others are refused.

Parameters: weight (out, in, d) or (out, in // groups, *kernel, d), bias (out, d), scale (normalize only).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional as AF
from ..checks import require_real_floating
from ..involution import involution_matrix
from ..learned_algebra import is_learned

__all__ = ["sandwich_matrices", "rotation_weight", "AlgebraRotationLinear", "AlgebraRotationConv1d",
           "AlgebraRotationConv2d", "AlgebraRotationConv3d"]


def sandwich_matrices(w: torch.Tensor, T: torch.Tensor, J: torch.Tensor) -> torch.Tensor:
    """M(w) with (w x) w̄ = M(w) x: w (..., d), structure T (d, d, d), involution J (d, d) -> (..., d, d)."""
    L = torch.einsum("ajc,...a->...cj", T, w)                    # L(w)[c, j]: (w x)_c
    R = torch.einsum("cbk,...b->...kc", T, w @ J.T)              # R(w̄)[k, c]: (y w̄)_k
    return R @ L


def rotation_weight(weight: torch.Tensor, algebra, J: torch.Tensor, normalize: bool = False,
                    scale: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """The real weight of a rotation layer: weight (out, in, *kernel, d) -> (out * d, in * d, *kernel) whose
    (o, i) block at each tap is M(w_oi) (divided by |w_oi|² + eps and multiplied by scale[o, i, ...] when
    normalize)."""
    A = AF.resolve_algebra(algebra, "rotation_weight")
    d = A.dim
    M = sandwich_matrices(weight, A.structure_tensor(weight.dtype, weight.device), J.to(weight))
    if normalize:
        M = M / (weight.square().sum(-1) + eps)[..., None, None]
        if scale is not None:
            M = M * scale[..., None, None]
    O, I, kernel = weight.shape[0], weight.shape[1], weight.shape[2:-1]
    k = len(kernel)
    M = M.permute(0, k + 2, 1, k + 3, *range(2, k + 2))            # (O, d, I, d, *kernel)
    return M.reshape(O * d, I * d, *kernel)


class _Rotation(nn.Module):
    _not_an_algebra_layer = True                 # not w x: counting and init_model_ treat it on its own terms

    def _setup(self, algebra, involution, normalize, eps, bias, shape, fan_in, who, device, dtype):
        A = AF.resolve_algebra(algebra, who)
        if is_learned(A):
            raise ValueError(f"{who}: rotation layers need a fixed algebra with an involution; {A.name} is learned")
        props = A.properties
        if not (props.get("associative") or props.get("flexible")):
            raise ValueError(f"{who}: algebra {A.name} is neither associative nor flexible, so w x w̄ depends on "
                             f"the bracketing; rotation layers need one of the two")
        self.algebra, self.normalize, self.eps, self.fan_in = A, bool(normalize), float(eps), int(fan_in)
        self.register_buffer("involution", torch.as_tensor(involution_matrix(A, involution, who),
                                                           dtype=dtype or torch.get_default_dtype(),
                                                           device=device))
        fk = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(*shape, A.dim, **fk))
        self.bias = nn.Parameter(torch.empty(shape[0], A.dim, **fk)) if bias else None
        self.scale = nn.Parameter(torch.empty(*shape, **fk)) if normalize else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian components; without normalize their std s makes E|w|^4 = s^4 d (d + 2) equal 1 / fan_in
        (|w x w̄| = |w|² |x| for composition algebras, so Var(y) ~ Var(x)); with normalize the terms are
        rotations and the scale starts at 1 / sqrt(fan_in).  Bias zero."""
        d, n = self.algebra.dim, max(self.fan_in, 1)
        with torch.no_grad():
            if self.normalize:
                self.weight.normal_()
                self.scale.fill_(1.0 / math.sqrt(n))
            else:
                self.weight.normal_(0.0, (n * d * (d + 2)) ** -0.25)
            if self.bias is not None:
                self.bias.zero_()

    def real_weight(self) -> torch.Tensor:
        """The (out * d, in * d, *kernel) real weight applied this forward pass (see `rotation_weight`)."""
        return rotation_weight(self.weight, self.algebra, self.involution, self.normalize, self.scale, self.eps)

    def _bias(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias.reshape(-1)


class AlgebraRotationLinear(_Rotation):
    """y_o = sum_i w_oi x_i w̄_oi (+ b_o); features counted in elements; input (..., in * d).

    Args: in_features, out_features, algebra, bias, normalize (divide by |w|², learnable scale), eps,
    involution (None: the algebra's default, else a (d,) sign vector or (d, d) matrix), device, dtype."""

    def __init__(self, in_features: int, out_features: int, algebra, bias: bool = True, normalize: bool = False,
                 eps: float = 1e-8, involution=None, device=None, dtype=None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self._setup(algebra, involution, normalize, eps, bias, (self.out_features, self.in_features),
                    self.in_features, "AlgebraRotationLinear", device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, "AlgebraRotationLinear")
        return F.linear(x, self.real_weight(), self._bias())

    def extra_macs(self, x_shape, *_) -> int:
        """Real multiply-adds: d² per (weight element, activation element) pair, as the block method."""
        return math.prod(x_shape[:-1]) * self.out_features * self.in_features * self.algebra.dim ** 2

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, algebra={self.algebra.name}, "
                f"normalize={self.normalize}, bias={self.bias is not None}")


class _RotationConvNd(_Rotation):
    _n = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, algebra, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, normalize: bool = False, eps: float = 1e-8,
                 involution=None, device=None, dtype=None) -> None:
        super().__init__()
        n, who = self._n, type(self).__name__
        tup = (lambda v: tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * n)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{who}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride, self.dilation = tup(kernel_size), tup(stride), tup(dilation)
        self.padding = padding if isinstance(padding, str) else tup(padding)
        shape = (self.out_channels, self.in_channels // groups, *self.kernel_size)
        self._setup(algebra, involution, normalize, eps, bias, shape, math.prod(shape[1:]), who, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        conv = (F.conv1d, F.conv2d, F.conv3d)[self._n - 1]
        return conv(x, self.real_weight(), self._bias(), self.stride, self.padding, self.dilation, self.groups)

    def extra_macs(self, x_shape, *_) -> int:
        """Real multiply-adds: d² per element pair per output position (the block method's count)."""
        n = self._n
        sizes = []
        for i, L in enumerate(x_shape[-n:]):
            if self.padding == "same":
                sizes.append(L)
                continue
            p = 0 if self.padding == "valid" else self.padding[i]
            k, s, dl = self.kernel_size[i], self.stride[i], self.dilation[i]
            sizes.append((L + 2 * p - dl * (k - 1) - 1) // s + 1)
        batch = math.prod(x_shape[:-n - 1])
        return (batch * math.prod(sizes) * self.out_channels * (self.in_channels // self.groups)
                * math.prod(self.kernel_size) * self.algebra.dim ** 2)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"algebra={self.algebra.name}, stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"normalize={self.normalize}")


class AlgebraRotationConv1d(_RotationConvNd):
    """Rotation convolution: y_o = sum_i sum_taps w x w̄ per tap; (N, C_in * d, L) -> (N, C_out * d, L')."""
    _n = 1


class AlgebraRotationConv2d(_RotationConvNd):
    """Rotation convolution: y_o = sum_i sum_taps w x w̄ per tap; (N, C_in * d, H, W) -> (N, C_out * d, H', W')."""
    _n = 2


class AlgebraRotationConv3d(_RotationConvNd):
    """Rotation convolution over (N, C_in * d, D, H, W)."""
    _n = 3
