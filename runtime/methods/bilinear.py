"""The bilinear method: the verified rank-r scheme as r real GEMMs (one bmm) / one grouped conv, forward and
backward through the mode-permuted schemes (runtime.methods.bilinear_fn), r MACs per element pair in every pass.

    step = bilinear_linear(weight, bias, A)            # (N, in*d) -> (N, out*d), weight combinations made once
    y = bilinear_conv(x, weight, bias, A, geometry)    # x (N, C_in*d, *S) padded symmetric -> (N, C_out*d, *S')

Under autocast the GEMMs run in the autocast dtype (the maps accumulate in float32, see bilinear_fn).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from ..checks import autocast_dtype
from ..registry import Algebra
from .bilinear_fn import BilinearConvFn, BilinearLinearFn, weight_combinations
from .geometry import ConvGeometry
from .weight_cache import cached_weight

__all__ = ["bilinear_linear", "bilinear_conv"]


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype the bilinear GEMMs run in: the autocast dtype, else the tensor's."""
    ac = autocast_dtype(t.device.type)
    return ac if ac is not None else t.dtype


def _combinations(weight: torch.Tensor, A: Algebra, conv: bool, cdtype: torch.dtype) -> torch.Tensor:
    """The scheme's weight combinations U . weight in the compute dtype: (r, O, I) for linear, stacked
    term-major (r*W0, W1, *k) for a conv (W0, W1 the weight's first two dims).  Cached until the weight
    changes, except while training (the weight changes every step, and gradcheck perturbs .data)."""
    U = A.constant("U", weight.dtype, weight.device)

    def make() -> torch.Tensor:
        return weight_combinations(weight.detach(), U, conv).to(cdtype).contiguous()

    if torch.is_grad_enabled() and weight.requires_grad:
        return make()
    return cached_weight(weight, ("bilinear", A, cdtype), make)


def _forward(x: torch.Tensor, weight: torch.Tensor, bias, A: Algebra, wc: torch.Tensor,
             geometry: ConvGeometry | None) -> torch.Tensor:
    dev = x.device.type
    ac = autocast_dtype(dev)
    cdtype = _compute_dtype(x)
    U, V, Wm = (A.constant(k, cdtype, weight.device) for k in ("U", "V", "W"))
    if x.dtype != cdtype:
        x = x.to(cdtype)
    with torch.autocast(dev, enabled=False) if ac is not None else contextlib.nullcontext():
        if geometry is None:
            return BilinearLinearFn.apply(x.contiguous(), weight, bias, wc, U, V, Wm)
        g = geometry
        return BilinearConvFn.apply(x.contiguous(), weight, bias, wc, U, V, Wm, g.stride, g.padding, g.dilation,
                                    g.groups, g.transposed, g.output_padding)


def bilinear_linear(weight: torch.Tensor, bias: torch.Tensor | None,
                    A: Algebra) -> Callable[[torch.Tensor], torch.Tensor]:
    """weight (out, in, d), bias (out, d) or None -> a step (N, in*d) -> (N, out*d), combinations made once."""
    wc = _combinations(weight, A, False, _compute_dtype(weight))
    return lambda x: _forward(x, weight, bias, A, wc, None)


def bilinear_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra,
                  geometry: ConvGeometry) -> torch.Tensor:
    """x (N, C_in*d, *S) with symmetric zero padding in `geometry` -> (N, C_out*d, *S')."""
    return _forward(x, weight, bias, A, _combinations(weight, A, True, _compute_dtype(x)), geometry)
