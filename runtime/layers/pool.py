"""Pooling that keeps algebra elements whole.

Average pooling is linear and acts on each real channel separately, so torch's average pools are
already correct on the element-major layout; `AlgebraAvgPool*d` / `AlgebraAdaptiveAvgPool*d` are those
pools with the `algebra=` argument for symmetry.  Real max pooling would pick each component from a
different position and tear elements apart, so `AlgebraMaxPool*d` / `AlgebraAdaptiveMaxPool*d` pick,
per element and window, the position with the largest element norm and return that whole element.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import require_real_floating
from ..learned_algebra import describe

__all__ = ["AlgebraMaxPool1d", "AlgebraMaxPool2d", "AlgebraMaxPool3d",
           "AlgebraAdaptiveMaxPool1d", "AlgebraAdaptiveMaxPool2d", "AlgebraAdaptiveMaxPool3d",
           "AlgebraAvgPool1d", "AlgebraAvgPool2d", "AlgebraAvgPool3d",
           "AlgebraAdaptiveAvgPool1d", "AlgebraAdaptiveAvgPool2d", "AlgebraAdaptiveAvgPool3d",
           "element_max_pool"]

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AMAX = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}


def element_max_pool(x: torch.Tensor, d: int, nd: int, pool) -> torch.Tensor:
    """Pool (N, C*d, *spatial) by element norm; `pool(norms)` returns (values, flat spatial indices)."""
    N, Cd = x.shape[:2]
    spatial = x.shape[2:]
    if len(spatial) != nd:
        raise ValueError(f"expected (N, C*d, {nd} spatial dims), got {tuple(x.shape)}")
    C = Cd // d
    xs = x.reshape(N, C, d, math.prod(spatial))                   # (N, C, d, S); explicit sizes: N may be 0
    norms = xs.detach().square().sum(2).reshape((N, C) + tuple(spatial))
    _, idx = pool(norms)                                          # (N, C, *out)
    out_sp = idx.shape[2:]
    S_out = math.prod(out_sp)
    gathered = xs.gather(3, idx.reshape(N, C, 1, S_out).expand(N, C, d, S_out))   # (N, C, d, S_out)
    return gathered.reshape((N, Cd) + tuple(out_sp))


class _MaxPool(nn.Module):
    nd = 0

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, algebra="R"):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self.algebra = describe(algebra)

    def forward(self, x):
        require_real_floating(x, type(self).__name__)
        f = _MAX[self.nd]
        return element_max_pool(x, self.algebra.dim, self.nd, lambda t: f(
            t, self.kernel_size, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode,
            return_indices=True))

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}, algebra={self.algebra.name}")


class _AdaptiveMaxPool(nn.Module):
    nd = 0

    def __init__(self, output_size, algebra="R"):
        super().__init__()
        self.output_size = output_size
        self.algebra = describe(algebra)

    def forward(self, x):
        require_real_floating(x, type(self).__name__)
        f = _AMAX[self.nd]
        return element_max_pool(x, self.algebra.dim, self.nd, lambda t: f(t, self.output_size, return_indices=True))

    def extra_repr(self):
        return f"output_size={self.output_size}, algebra={self.algebra.name}"


class AlgebraMaxPool1d(_MaxPool):
    nd = 1


class AlgebraMaxPool2d(_MaxPool):
    nd = 2


class AlgebraMaxPool3d(_MaxPool):
    nd = 3


class AlgebraAdaptiveMaxPool1d(_AdaptiveMaxPool):
    nd = 1


class AlgebraAdaptiveMaxPool2d(_AdaptiveMaxPool):
    nd = 2


class AlgebraAdaptiveMaxPool3d(_AdaptiveMaxPool):
    nd = 3


def _with_algebra(base):
    class Pool(base):
        def __init__(self, *args, algebra="R", **kwargs):
            super().__init__(*args, **kwargs)
            self.algebra = describe(algebra)

        def forward(self, x):
            require_real_floating(x, type(self).__name__)      # torch would truncate integer averages
            return super().forward(x)

        def extra_repr(self):
            return super().extra_repr() + f", algebra={self.algebra.name}"

    Pool.__name__ = Pool.__qualname__ = "Algebra" + base.__name__
    Pool.__doc__ = f"torch.nn.{base.__name__} (linear per real channel, so elements stay whole), with algebra=."
    return Pool


AlgebraAvgPool1d = _with_algebra(nn.AvgPool1d)
AlgebraAvgPool2d = _with_algebra(nn.AvgPool2d)
AlgebraAvgPool3d = _with_algebra(nn.AvgPool3d)
AlgebraAdaptiveAvgPool1d = _with_algebra(nn.AdaptiveAvgPool1d)
AlgebraAdaptiveAvgPool2d = _with_algebra(nn.AdaptiveAvgPool2d)
AlgebraAdaptiveAvgPool3d = _with_algebra(nn.AdaptiveAvgPool3d)
