"""The complex method: an algebra layer as torch's own complex GEMM / convolution, where the algebra is complex.

An algebra qualifies when its left-regular representation, or the p x p block of its fold plan, is the
realification of a complex matrix in the element-major (re, im) pairing: every block B(w) is made of 2 x 2
sub-blocks [[a, -b], [b, a]] (a + ib the complex entry), and every (re, im) pair of the fold order is a pair of
adjacent components (2k, 2k+1) of an element; and the imaginary parts b do not all vanish (a real matrix acting
on pairs, as M2R's, would run at twice block's work).  That is decided exactly from the float64 block tensor (its
entries are small rationals) the first time it is asked and kept on the algebra (`AlgebraCache.complex_plan`).
C qualifies with m = 1 (its whole 2 x 2 block), M2C with its fold plan (m = 2 columns, q = 2 complex rows).

The element-major layout (re, im adjacent) is complex64's / complex128's memory layout, so for a linear layer
the activations are complex tensors by `torch.view_as_complex` (no copy); with a fold plan (m > 1) the m
complex blocks of every element are folded into the batch (runtime.methods.fold_fn's fold_in / unfold_out on
the complex tensors).  The weight (O, I, *k, d) becomes the complex (O*q, I*q, *k) matrix of the q x q complex
blocks Bc(w)[t, s] = sum_a w_a (map[a, t, s, 0] + i map[a, t, s, 1]).  A convolution's channels are
element-major but its positions are innermost, so re and im are not adjacent in memory: the input and output
are copied to and from the interleaved layout.  Forward, both gradients and second derivatives are autograd
through torch's complex ops (MKL / cuBLAS complex GEMM: 4 real multiplications per complex product; CPU complex
convolution: torch runs 3 real convolutions).  Real MACs per element pair: m q^2 complex products x 4 =
4 m (p/2)^2 = d^2 / m (C: 4, M2C: 32; the same real count as fold, in one complex kernel).

    step = complex_linear(weight, bias, A)           # (N, in*d) -> (N, out*d)
    y = complex_conv(x, weight, bias, A, geometry)   # x (N, C_in*d, *S) padded symmetric -> (N, C_out*d, *S')

Float32 (complex64) and float64 (complex128) only: there is no half-precision complex GEMM on CPU; under
autocast the layer runs in the weight's dtype.  An algebra that does not qualify raises a ValueError naming it
(the method never falls back silently).  A fold through a basis change (change_in / change_out, e.g. Cl(3,0))
is not used: the build's change puts the complex structure in a scaled, mixed form (the imaginary unit acts
on a pair as [[0, -2], [1/2, 0]]), so the pattern test fails; reaching it needs a further basis change inside
the block, which is not done.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import Algebra, FoldPlan
from .fold_fn import fold_in, unfold_out
from .geometry import ConvGeometry
from .weight_cache import cached_weight

__all__ = ["ComplexPlan", "complex_plan", "applies", "require", "complex_macs", "complex_weight",
           "complex_linear", "complex_conv"]

_NOT_COMPLEX = "not complex"          # the cache's entry for an algebra that does not qualify


@dataclass(frozen=True)
class ComplexPlan:
    """How an algebra layer runs as a complex GEMM.

    m: blocks folded into the batch (1: none); q: complex block size (p / 2); plan: the fold over the d/2
    complex components (a FoldPlan with p = q and perm over complex indices), None when there is nothing to
    fold (m == 1 in the element's own order); weight_map: (d, q, q, 2) float64, Bc(w)[t, s] = sum_a w_a
    (weight_map[a, t, s, 0] + i weight_map[a, t, s, 1]); direct: weight_map is the identity (the weight's own
    (re, im) pairs are the complex entries, as for C), so the complex weight is a view of the real one."""

    m: int
    q: int
    plan: FoldPlan | None
    weight_map: np.ndarray
    direct: bool


def _is_realified(block: np.ndarray) -> bool:
    """Whether every (p, p) slice of block (d, p, p) is made of 2 x 2 sub-blocks [[a, -b], [b, a]] (exact) with
    b not identically zero (b == 0 everywhere is a real matrix acting on pairs, as L(w) of M2R: a complex
    GEMM would multiply zeros and double the work)."""
    p = block.shape[1]
    if p % 2:
        return False
    a, b = block[:, 0::2, 0::2], block[:, 1::2, 0::2]
    return bool(np.array_equal(block[:, 1::2, 1::2], a) and np.array_equal(block[:, 0::2, 1::2], -b) and b.any())


def _paired(perm: tuple[int, ...]) -> bool:
    """Whether positions (2k, 2k+1) of the fold order hold the adjacent components (2j, 2j+1) of an element."""
    return all(perm[k] % 2 == 0 and perm[k + 1] == perm[k] + 1 for k in range(0, len(perm), 2))


def _complex_fold(plan: FoldPlan) -> FoldPlan | None:
    """The fold plan over the d/2 complex components (None when it is the identity with m == 1); a strided
    view when the real plan has one whose last axis keeps the (re, im) pairs together."""
    cperm = tuple(i // 2 for i in plan.perm[0::2])
    m, q = plan.m, plan.p // 2
    if m == 1 and cperm == tuple(range(len(cperm))):
        return None
    view = (None, None, None)
    vs, ax, split = plan.view_shape, plan.view_axes, plan.split
    if vs is not None and ax[-1] == len(vs) - 1 and vs[-1] % 2 == 0:
        cvs = vs[:-1] + ((vs[-1] // 2,) if vs[-1] > 2 else ())
        cax = ax if vs[-1] > 2 else ax[:-1]
        if 0 < split < len(cax) and tuple(np.arange(len(cperm)).reshape(cvs).transpose(cax).ravel()) == cperm:
            view = (cvs, cax, split)
    return FoldPlan(m, q, cperm, np.zeros((0, q, q)), *view)


def _find(A: Algebra) -> ComplexPlan | None:
    """The complex plan of A from its fold plan (when it has no basis change) or its whole block, else None."""
    candidates = ([A.fold] if A.fold.m > 1 and A.fold.change_in is None else []) + [FoldPlan.identity(A.structure)]
    for plan in candidates:
        if _is_realified(plan.block) and _paired(plan.perm):
            wm = np.stack([plan.block[:, 0::2, 0::2], plan.block[:, 1::2, 0::2]], axis=-1)     # (d, q, q, 2)
            q = plan.p // 2
            direct = wm.shape[0] == 2 * q * q and np.array_equal(wm.reshape(A.dim, -1), np.eye(A.dim))
            return ComplexPlan(plan.m, q, _complex_fold(plan), np.ascontiguousarray(wm), bool(direct))
    return None


def complex_plan(A: Algebra) -> ComplexPlan | None:
    """A's complex plan, or None where the method does not apply; decided once and kept on the algebra."""
    hit = A.cache.complex_plan
    if hit is None:
        found = _find(A)
        hit = A.cache.complex_plan = _NOT_COMPLEX if found is None else found
    return None if hit is _NOT_COMPLEX else hit


def applies(A: Algebra) -> bool:
    """Whether the complex method can compute layers over A."""
    return complex_plan(A) is not None


def require(A: Algebra) -> ComplexPlan:
    """A's complex plan, or a ValueError naming the algebra and why."""
    cp = complex_plan(A)
    if cp is None:
        raise ValueError(f"method='complex' does not apply to algebra {A.name}: its left-regular representation "
                         f"(or fold block) is not a complex matrix in the (re, im) pairing of adjacent "
                         f"components; use 'auto', 'block', 'fold' or 'bilinear'")
    return cp


def complex_macs(A: Algebra) -> float:
    """Real MACs per element pair: m q^2 complex products of 4 real multiplications (= d^2 / m)."""
    cp = require(A)
    return float(4 * cp.m * cp.q * cp.q)


def complex_weight(w: torch.Tensor, cp: ComplexPlan, transposed: bool = False) -> torch.Tensor:
    """w (O, I, *k, d) real -> (O*q, I*q, *k) complex: rows (o, t), columns (i, s), entry Bc(w_oi)[t, s];
    transposed=True: entry Bc(w_oi)[s, t] (torch's transposed-conv layout is then (C_in*q, C_out/groups*q, *k))."""
    O, I, k, d = w.shape[0], w.shape[1], w.shape[2:-1], w.shape[-1]
    q, K = cp.q, math.prod(k)
    if cp.direct and q == 1:                    # C: the weight's (re, im) pairs are the entries, a view
        return torch.view_as_complex(w)
    if cp.direct:
        Wr = w.reshape(O, I, K, q, q, 2)
    else:
        wm = torch.as_tensor(cp.weight_map, dtype=w.dtype, device=w.device).reshape(d, q * q * 2)
        Wr = torch.matmul(w.reshape(O * I * K, d), wm).view(O, I, K, q, q, 2)
    if transposed:
        Wr = Wr.transpose(3, 4)
    Wc = torch.view_as_complex(Wr.permute(0, 3, 1, 4, 2, 5).contiguous())       # (O, q, I, q, K)
    return Wc.reshape(O * q, I * q, *k)


def _real_dtype(t: torch.Tensor) -> torch.dtype:
    if t.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"method='complex' runs in float32 (complex64) or float64 (complex128), got a {t.dtype} "
                         f"weight; use another method for half precision")
    return t.dtype


def _weight(weight: torch.Tensor, A: Algebra, cp: ComplexPlan, transposed: bool) -> torch.Tensor:
    """The complex weight, recomputed with autograd when a gradient flows to it, else cached until it changes."""
    _real_dtype(weight)
    if torch.is_grad_enabled() and weight.requires_grad:
        return complex_weight(weight.contiguous(), cp, transposed)
    tag = ("complex_t" if transposed else "complex", A, weight.dtype)
    return cached_weight(weight, tag, lambda: complex_weight(weight.detach().contiguous(), cp, transposed))


def _complex_bias(bias: torch.Tensor | None) -> torch.Tensor | None:
    """bias (C, d) real -> (C*d/2,) complex, a view."""
    return None if bias is None else torch.view_as_complex(bias.contiguous().view(-1, 2))


def complex_linear(weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra) -> Callable[[torch.Tensor], torch.Tensor]:
    """weight (out, in, d), bias (out, d) or None -> a step (N, in*d) -> (N, out*d); the complex weight made once."""
    cp = require(A)
    W = _weight(weight, A, cp, False)
    O, I, d = weight.shape[0], weight.shape[1], A.dim

    def step(x: torch.Tensor) -> torch.Tensor:
        N = x.shape[0]
        xc = torch.view_as_complex(x.to(weight.dtype).contiguous().view(N, I * d // 2, 2))     # (N, I*d/2)
        if cp.plan is None:
            return torch.view_as_real(F.linear(xc, W, _complex_bias(bias))).view(N, O * d)
        yc = unfold_out(F.linear(fold_in(xc, cp.plan, I), W), cp.plan, O)       # (N*m, I*q) -> (N*m, O*q) -> (N, O*d/2)
        y = torch.view_as_real(yc).reshape(N, O * d)
        return y if bias is None else y + bias.to(y.dtype).reshape(-1)
    return step


def complex_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra,
                 geometry: ConvGeometry) -> torch.Tensor:
    """x (N, C_in*d, *S) with symmetric zero padding in `geometry` -> (N, C_out*d, *S'), torch's complex
    (transposed) convolution on the interleaved copy of x."""
    cp = require(A)
    g = geometry
    d, h = A.dim, A.dim // 2
    W = _weight(weight, A, cp, g.transposed)
    x = x.to(weight.dtype)
    N, sp = x.shape[0], tuple(x.shape[2:])
    C_in = x.shape[1] // d
    C_out = weight.shape[1] * g.groups if g.transposed else weight.shape[0]
    xc = torch.view_as_complex(x.reshape(N, C_in * h, 2, *sp).movedim(2, -1).contiguous())   # (N, C_in*d/2, *S)
    if cp.plan is not None:
        xc = fold_in(xc, cp.plan, C_in)                                                      # (N*m, C_in*q, *S)
    b = _complex_bias(bias) if cp.plan is None else None
    if g.transposed:
        yc = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[g.nd - 1](
            xc, W, b, g.stride, g.padding, g.output_padding, g.groups, g.dilation)
    else:
        yc = (F.conv1d, F.conv2d, F.conv3d)[g.nd - 1](xc, W, b, g.stride, g.padding, g.dilation, g.groups)
    if cp.plan is not None:
        yc = unfold_out(yc, cp.plan, C_out)                                                  # (N, C_out*d/2, *S')
    sp_out = tuple(yc.shape[2:])
    y = torch.view_as_real(yc).movedim(-1, 2).reshape(N, C_out * d, *sp_out)
    if cp.plan is not None and bias is not None:
        y = y + bias.to(y.dtype).reshape(1, C_out * d, *([1] * len(sp_out)))
    return y
