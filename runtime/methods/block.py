"""The block and fold methods: the algebra layer as ONE real GEMM / conv on an expanded weight.

block: the weight (O, I, *k, d) expanded to the real matrix of left-multiplication blocks L(w) ((O*d) x (I*d)),
d^2 MACs per element pair: the reference path (autograd through torch's own ops).  fold: when the left-regular
representation splits into m identical p x p blocks (the build's fold plan), the m blocks of each activation are
folded into the batch (runtime.methods.fold_fn), p^2 = d^2/m MACs per pair.  With m == 1 fold IS block.

    step = block_linear(weight, bias, A)      # or fold_linear: (N, in*d) -> (N, out*d)
    y = block_conv(x, weight, bias, A, geometry)   # x (N, C_in*d, *S) padded symmetric -> (N, C_out*d, *S')
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import autocast_dtype
from ..registry import Algebra, FoldPlan
from .fold_fn import FoldConvFn, FoldLinearFn, fold_planar
from .geometry import ConvGeometry
from .weight_cache import cached_weight

__all__ = ["expand", "real_forward", "block_linear", "fold_linear", "block_conv", "fold_conv"]

_BLOCK_PLAN = FoldPlan(1, 0, (), np.zeros(0), None, None, None)    # m == 1: the one-GEMM block path


def expand(w: torch.Tensor, Tb: torch.Tensor, planar: bool = False) -> torch.Tensor:
    """w (O, I, *k, d), Tb (d, p, p) -> (O*p, I*p, *k): the real weight of blocks B(w_oi)[t,s] = sum_a Tb[a,t,s] w_a,
    rows (o, t) and columns (i, s); planar=True: rows (t, o) and columns (s, i) (see methods.fold_fn.fold_planar)."""
    O, I = w.shape[0], w.shape[1]
    k = w.shape[2:-1]
    d = w.shape[-1]
    p = Tb.shape[1]
    K = math.prod(k)
    B = torch.matmul(w.reshape(O * I * K, d), Tb.to(w.dtype).reshape(d, p * p)).view(O, I, K, p, p)
    return B.permute(*((3, 0, 4, 1, 2) if planar else (0, 3, 1, 4, 2))).reshape(O * p, I * p, *k)


def _plan(A: Algebra, fold: bool) -> tuple[FoldPlan, str]:
    """The fold plan of the path (the trivial one-block plan for block) and the name of its constant block."""
    return (A.fold, "fold") if fold else (_BLOCK_PLAN, "block")


def _weight(weight: torch.Tensor, A: Algebra, plan: FoldPlan, const: str, geometry: ConvGeometry | None) -> torch.Tensor:
    """The real weight of the block (plan.m == 1) or folded path, in the layout that path's activations use;
    a transposed conv uses the transposed block tensor, so that the result has torch's (C_in*p, C_out/groups*p,
    *k) layout.  Cached until the weight changes when no gradient flows to it."""
    transposed = geometry is not None and geometry.transposed
    Tb = A.constant(const, weight.dtype, weight.device)
    if Tb.numel() == 1 and A.constant(const).item() == 1:   # the real numbers: the weight is its own block (a view)
        return weight.reshape(weight.shape[:-1])
    if transposed:
        Tb = Tb.transpose(1, 2)
    planar = fold_planar(plan, geometry is not None)
    if torch.is_grad_enabled() and weight.requires_grad:
        return expand(weight, Tb, planar)
    tag = (const + ("_t" if transposed else "") + ("_planar" if planar else ""), A, weight.dtype)
    return cached_weight(weight, tag, lambda: expand(weight.detach(), Tb, planar))


def real_forward(x: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None,
                 geometry: ConvGeometry | None) -> torch.Tensor:
    """torch's own linear / conv / transposed conv with the real weight B (as `expand` makes it) and bias
    (C_out, d) | None flattened; geometry None: linear."""
    b = None if bias is None else bias.reshape(-1)
    if geometry is None:
        return F.linear(x, B, b)
    g = geometry
    if g.transposed:
        return (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[g.nd - 1](
            x, B, b, g.stride, g.padding, g.output_padding, g.groups, g.dilation)
    return (F.conv1d, F.conv2d, F.conv3d)[g.nd - 1](x, B, b, g.stride, g.padding, g.dilation, g.groups)


def _forward(x: torch.Tensor, weight: torch.Tensor, bias, A: Algebra, plan: FoldPlan, B: torch.Tensor,
             geometry: ConvGeometry | None) -> torch.Tensor:
    """One call on the expanded weight B: torch's own linear / conv for block, the fold Functions for fold."""
    if plan.m == 1:
        return real_forward(x, B, bias, geometry)
    C_in = x.shape[1] // A.dim
    dev = x.device.type
    ac = autocast_dtype(dev)
    if ac is not None:
        x, B = x.to(ac), B.to(ac)
    with torch.autocast(dev, enabled=False) if ac is not None else contextlib.nullcontext():
        if geometry is None:
            return FoldLinearFn.apply(x.contiguous(), B, bias, plan, C_in, weight.shape[0])
        g = geometry
        C_out = weight.shape[1] * g.groups if g.transposed else weight.shape[0]
        return FoldConvFn.apply(x.contiguous(), B, bias, plan, C_in, C_out, g.stride, g.padding, g.dilation,
                                g.groups, g.transposed, g.output_padding)


def _linear(weight: torch.Tensor, bias, A: Algebra, fold: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    plan, const = _plan(A, fold)
    B = _weight(weight, A, plan, const, None)
    return lambda x: _forward(x, weight, bias, A, plan, B, None)


def block_linear(weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra) -> Callable[[torch.Tensor], torch.Tensor]:
    """weight (out, in, d), bias (out, d) or None -> a step (N, in*d) -> (N, out*d), the weight expanded once."""
    return _linear(weight, bias, A, False)


def fold_linear(weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra) -> Callable[[torch.Tensor], torch.Tensor]:
    """As `block_linear`, through the fold plan."""
    return _linear(weight, bias, A, True)


def block_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra,
               geometry: ConvGeometry) -> torch.Tensor:
    """x (N, C_in*d, *S) with symmetric zero padding in `geometry` -> (N, C_out*d, *S')."""
    plan, const = _plan(A, False)
    return _forward(x, weight, bias, A, plan, _weight(weight, A, plan, const, geometry), geometry)


def fold_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra,
              geometry: ConvGeometry) -> torch.Tensor:
    """As `block_conv`, through the fold plan."""
    plan, const = _plan(A, True)
    return _forward(x, weight, bias, A, plan, _weight(weight, A, plan, const, geometry), geometry)
