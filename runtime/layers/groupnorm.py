"""Group and instance normalisation for algebra-valued tensors (element-major: component k of element c at c*d + k).

    gn = AlgebraGroupNorm(num_groups, num_channels, algebra="H", mode="component", eps=1e-5, affine=True)
    inorm = AlgebraInstanceNorm2d(num_features, algebra="H", mode="whitening", affine=False,
                                  track_running_stats=False)
    y = gn(x)                   # x (N, num_channels * d, *spatial) -> same shape

Channels count algebra elements.  AlgebraGroupNorm splits the num_channels elements of every sample into
num_groups groups of consecutive elements and normalises each group over its elements and spatial positions;
AlgebraInstanceNorm1d/2d/3d normalise every element of every sample over its spatial positions.  The modes
are those of AlgebraBatchNorm (one statistics implementation, runtime.layers.norm.normalize_units):

- ``mode="component"``: every real component separately (its own mean and variance per group / instance).
  Affine weight and bias (C, d).  For instance norm this is exactly torch's InstanceNorm on the C*d real
  channels; with algebra="R" both layers equal nn.GroupNorm / nn.InstanceNorm*.
- ``mode="whitening"``: centre, then multiply by the inverse square root of the d x d component covariance
  (plus eps*I) of the group / instance: its whitened covariance is the identity.  Affine weight (C, d, d)
  (initialised to I), bias (C, d).
- ``mode="norm"``: centre (``center=True``) and divide by sqrt(E||x - mu||^2 / d + eps) of the group /
  instance: directions are kept.  Affine weight (C,) (a real scale per element), bias (C, d).

AlgebraGroupNorm(num_groups, num_channels, algebra, mode, eps=1e-5, affine=True) mirrors nn.GroupNorm (no
running statistics).  AlgebraInstanceNorm*(num_features, algebra, mode, eps=1e-5, momentum=0.1, affine=False,
track_running_stats=False) mirrors nn.InstanceNorm*: unbatched inputs, and with track_running_stats the batch
mean of the per-instance statistics (unbiased) is tracked with `momentum` (None: no update, as in torch) and
used in eval mode.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..learned_algebra import describe
from .norm import (NORM_MODES, AlgebraBatchNormBase, affine_parameters, apply_matrix, normalize_units,
                   reset_affine_, unit_view)

__all__ = ["AlgebraGroupNorm", "AlgebraInstanceNorm1d", "AlgebraInstanceNorm2d", "AlgebraInstanceNorm3d",
           "channel_affine"]


def channel_affine(y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-element affine map of y (N, C, d, *spatial): weight (C, d) per component, (C, d, d) on the left
    (whitening), or (C,) a real scale (norm); plus bias (C, d)."""
    red = [0] + list(range(3, y.dim()))
    if mode == "whitening":
        y = apply_matrix(weight, y, 2, red)
    else:
        y = y * unit_view(weight.unsqueeze(-1) if mode == "norm" else weight, y, red)
    return y + unit_view(bias, y, red)


class AlgebraGroupNorm(nn.Module):
    """Group norm over an algebra; see the module docstring.  Input (N, num_channels*d, *), any number of
    trailing dims (none included)."""

    _not_an_algebra_layer = True          # its (C, d, d) whitening weight is not a layer weight

    def __init__(self, num_groups: int, num_channels: int, algebra="R", mode: str = "component",
                 eps: float = 1e-5, affine: bool = True, center: bool = True,
                 compute_dtype: torch.dtype = torch.float64, device=None, dtype=None) -> None:
        super().__init__()
        for label, v in (("num_groups", num_groups), ("num_channels", num_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"AlgebraGroupNorm: {label} must be a positive int (channels count algebra "
                                 f"elements), got {v!r}")
        if num_channels % num_groups:
            raise ValueError(f"AlgebraGroupNorm: num_channels={num_channels} must be divisible by "
                             f"num_groups={num_groups}")
        if mode not in NORM_MODES:
            raise ValueError(f"AlgebraGroupNorm: mode must be one of {NORM_MODES}, got {mode!r}")
        self.algebra = describe(algebra)
        self.num_groups, self.num_channels = num_groups, num_channels
        self.mode, self.eps, self.affine, self.center = mode, eps, affine, center
        self.compute_dtype = compute_dtype
        if affine:
            self.weight, self.bias = affine_parameters(mode, num_channels, self.algebra.dim,
                                                       {"device": device, "dtype": dtype})
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            reset_affine_(self.weight, self.bias, self.mode)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, algebra={self.algebra.name}, mode={self.mode!r}, "
                f"eps={self.eps}, affine={self.affine}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, C, G = self.algebra.dim, self.num_channels, self.num_groups
        if x.dim() < 2 or x.shape[1] != C * d:
            raise ValueError(f"AlgebraGroupNorm: expected input (N, {C}*{d}, *) ({C} elements x d={d} channels), "
                             f"got shape {tuple(x.shape)}")
        xs = x.unflatten(1, (G, C // G, d))                               # (N, G, C/G, d, *spatial)
        y, _, _ = normalize_units(xs, 3, [2] + list(range(4, xs.dim())), self.mode, self.eps, self.compute_dtype,
                                  self.center)
        y = y.flatten(1, 2)                                               # (N, C, d, *spatial)
        if self.affine:
            y = channel_affine(y, self.weight, self.bias, self.mode)
        return y.flatten(1, 2)


class _AlgebraInstanceNorm(AlgebraBatchNormBase):
    """Instance norm: AlgebraBatchNorm's parameters and buffers, per-instance statistics."""

    _nd = 0

    def __init__(self, num_features: int, algebra="R", mode: str = "component", eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = False, track_running_stats: bool = False,
                 center: bool = True, compute_dtype: torch.dtype = torch.float64, device=None, dtype=None) -> None:
        super().__init__(num_features, algebra, mode, eps, momentum, affine, track_running_stats, center,
                         compute_dtype, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nd, d, C = self._nd, self.algebra.dim, self.num_features
        cls = type(self).__name__
        if x.dim() not in (nd + 1, nd + 2):
            raise ValueError(f"{cls}: expected {nd + 2}D (N, C*d, *spatial) or {nd + 1}D unbatched input, got "
                             f"{x.dim()}D input of shape {tuple(x.shape)}")
        unbatched = x.dim() == nd + 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.shape[1] != C * d:
            raise ValueError(f"{cls}: expected {C} elements x {d} components = {C * d} channels, got input of "
                             f"shape {tuple(x.shape)}")
        y = self._instance_norm(x)
        return y.squeeze(0) if unbatched else y

    def _instance_norm(self, x: torch.Tensor) -> torch.Tensor:
        use_input = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum        # torch: None means no update
        if self.mode == "component":
            rm = self.running_mean.view(-1) if self.running_mean is not None else None
            rv = self.running_var.view(-1) if self.running_var is not None else None
            w = self.weight.reshape(-1) if self.affine else None
            b = self.bias.reshape(-1) if self.affine else None
            return F.instance_norm(x, rm, rv, w, b, use_input, momentum, self.eps)
        xs = x.unflatten(1, (self.num_features, self.algebra.dim))        # (N, C, d, *spatial)
        spatial = list(range(3, xs.dim()))
        n = math.prod(xs.shape[3:])
        w = self.weight if self.affine else None
        second_name = "running_cov" if self.mode == "whitening" else "running_var"
        if use_input:
            if n <= 1:
                raise ValueError(f"{type(self).__name__}: expected more than 1 spatial element when using "
                                 f"instance statistics, got input size {tuple(x.shape)}")
            y, mean, second = normalize_units(xs, 2, spatial, self.mode, self.eps, self.compute_dtype, self.center,
                                              weight=w)
            if self.training and self.track_running_stats:
                with torch.no_grad():        # the batch mean of the per-instance (unbiased) statistics
                    self.running_mean.lerp_(mean.detach().mean(0).to(self.running_mean.dtype), momentum)
                    running = getattr(self, second_name)
                    running.lerp_((second.detach().mean(0) * (n / (n - 1))).to(running.dtype), momentum)
        else:                                # eval with running statistics: as batch norm in eval mode
            y, _, _ = normalize_units(xs, 2, [0] + spatial, self.mode, self.eps, self.compute_dtype, self.center,
                                      self.running_mean, getattr(self, second_name), w)
        if self.affine:
            y = y + unit_view(self.bias, y, [0] + spatial)
        return y.flatten(1, 2)


class AlgebraInstanceNorm1d(_AlgebraInstanceNorm):
    """Instance norm over (N, C*d, L) or unbatched (C*d, L) inputs; C = num_features elements."""

    _nd = 1


class AlgebraInstanceNorm2d(_AlgebraInstanceNorm):
    """Instance norm over (N, C*d, H, W) or unbatched (C*d, H, W) inputs; C = num_features elements."""

    _nd = 2


class AlgebraInstanceNorm3d(_AlgebraInstanceNorm):
    """Instance norm over (N, C*d, D, H, W) or unbatched (C*d, D, H, W) inputs; C = num_features elements."""

    _nd = 3
