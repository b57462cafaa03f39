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
(the method never falls back silently).

A fold through a basis change (F x in, G y out; Cl(3,0) = M2(C) in its blade basis) qualifies when the matrices
commuting with its p x p block form a copy of C: its imaginary unit J (J^2 = -1) is found in float64 (an SVD
null space; relative tolerance 1e-9), a basis v1, J v1, v2, J v2, ... of the block space puts J in the
standard [[0, -1], [1, 0]] form on every pair, and the change matrices are composed with the fold order and
that basis, so each activation element is multiplied by one (d, d) matrix on the way in and one on the way
out (d^2 MACs per element each, counted like fold's change).  The build's change alone does not do it: it
leaves the imaginary unit as [[0, -2], [1/2, 0]] on a pair and mixes pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import Algebra, FoldPlan
from .block import block_conv, block_linear
from .fold_fn import fold_in, unfold_out
from .geometry import ConvGeometry
from .weight_cache import cached_weight

__all__ = ["ComplexPlan", "complex_plan", "applies", "require", "complex_macs", "change_macs", "complex_weight",
           "complex_linear", "complex_conv"]

_NOT_COMPLEX = "not complex"          # the cache's entry for an algebra that does not qualify


@dataclass(frozen=True)
class ComplexPlan:
    """How an algebra layer runs as a complex GEMM.

    m: blocks folded into the batch (1: none); q: complex block size (p / 2); plan: the fold over the d/2
    complex components (a FoldPlan with p = q and perm over complex indices), None when there is nothing to
    fold (m == 1 in the element's own order); weight_map: (d, q, q, 2) float64, Bc(w)[t, s] = sum_a w_a
    (weight_map[a, t, s, 0] + i weight_map[a, t, s, 1]); direct: weight_map is the identity (the weight's own
    (re, im) pairs are the complex entries, as for C), so the complex weight is a view of the real one.
    change_in, change_out: None, or (d, d) float64 matrices of a fold through a basis change: every activation
    element x becomes change_in x, whose components are in folded order (block c, position s at c*p + s) with
    the (re, im) pairs adjacent; every folded output element y' becomes change_out y' (plan then folds the
    complex components (c, s) in that order)."""

    m: int
    q: int
    plan: FoldPlan | None
    weight_map: np.ndarray
    direct: bool
    change_in: np.ndarray | None = None
    change_out: np.ndarray | None = None
    matrices: dict = field(default_factory=dict, compare=False, repr=False)

    def matrix(self, which: str, dtype: torch.dtype, device) -> torch.Tensor:
        """change_in ("in", (d, d)) or change_out ("out") as a tensor, made once per dtype and device."""
        key = (which, dtype, torch.device(device))
        hit = self.matrices.get(key)
        if hit is None:
            M = self.change_in if which == "in" else self.change_out
            hit = self.matrices[key] = torch.as_tensor(M, dtype=dtype, device=device)
        return hit


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


_TOL = 1e-9        # relative tolerance of the float64 tests of a fold through a basis change


def _complex_structure(blocks: np.ndarray) -> np.ndarray | None:
    """A real J (p, p) with J^2 = -1 commuting with every blocks[a] (d, p, p), when the matrices commuting with
    all blocks form a copy of C (spanned by 1 and J); else None.  Float64 (SVD null space)."""
    d, p, _ = blocks.shape
    eye = np.eye(p)
    # row-major vec: vec(J B) = (1 x B^T) vec(J), vec(B J) = (B x 1) vec(J)
    M = np.concatenate([np.kron(eye, B.T) - np.kron(B, eye) for B in blocks])
    _, sv, vt = np.linalg.svd(M)
    null = vt[sv < _TOL * max(sv[0], 1.0)] if len(sv) == p * p else None
    if null is None or len(null) != 2:
        return None
    K = max((v.reshape(p, p) - np.trace(v.reshape(p, p)) / p * eye for v in null), key=np.linalg.norm)
    coef, res, *_ = np.linalg.lstsq(np.stack([eye.ravel(), K.ravel()], 1), (K @ K).ravel(), rcond=None)
    alpha, beta = coef
    gamma = -(alpha + beta * beta / 4)
    if gamma <= _TOL or not np.allclose(K @ K, alpha * eye + beta * K, atol=_TOL * np.abs(K).max() ** 2):
        return None                                         # the commutant is R x R (split), not C
    J = (K - beta / 2 * eye) / np.sqrt(gamma)
    return J if np.allclose(J @ J, -eye, atol=1e-12) else None


def _adapted_basis(J: np.ndarray) -> np.ndarray:
    """P (p, p) with columns v_1, J v_1, v_2, J v_2, ... (v_k unit vectors, greedily): P^-1 J P is the
    standard [[0, -1], [1, 0]] on every pair."""
    p = J.shape[0]
    cols: list[np.ndarray] = []
    for k in range(p):
        e = np.eye(p)[k]
        trial = np.stack(cols + [e, J @ e], 1)
        if np.linalg.matrix_rank(trial, tol=1e-9) == len(cols) + 2:
            cols += [e, J @ e]
        if len(cols) == p:
            break
    return np.stack(cols, 1)


def _through_change(A: Algebra) -> ComplexPlan | None:
    """The complex plan of a fold through a basis change (F, G): the complex structure J of its block, the basis
    P adapted to it inside the block, and the changes composed with the fold order and P."""
    plan = A.fold
    J = _complex_structure(plan.block)
    if J is None:
        return None
    P = _adapted_basis(J)
    Pinv = np.linalg.inv(P)
    B = np.einsum("ts,asr,ru->atu", Pinv, plan.block, P)
    a, b = (B[:, 0::2, 0::2] + B[:, 1::2, 1::2]) / 2, (B[:, 1::2, 0::2] - B[:, 0::2, 1::2]) / 2
    scale = np.abs(plan.block).max()
    if (np.abs(B[:, 0::2, 0::2] - a).max() > _TOL * scale or np.abs(B[:, 1::2, 0::2] - b).max() > _TOL * scale
            or not b.any()):
        return None
    m, p, q = plan.m, plan.p, plan.p // 2
    perm = list(plan.perm)
    change_in = np.kron(np.eye(m), Pinv) @ plan.change_in[perm]              # x -> folded, adapted components
    change_out = plan.change_out[:, perm] @ np.kron(np.eye(m), P)            # folded, adapted y' -> y
    cplan = FoldPlan(m, q, tuple(range(m * q)), np.zeros((0, q, q)), (m, q), (0, 1), 1)
    return ComplexPlan(m, q, cplan, np.ascontiguousarray(np.stack([a, b], axis=-1)), False,
                       np.ascontiguousarray(change_in), np.ascontiguousarray(change_out))


def _find(A: Algebra) -> ComplexPlan | None:
    """The complex plan of A from its fold plan without a basis change or its whole block (exact tests), else
    from its fold through a basis change (float64, see `_through_change`), else None."""
    candidates = ([A.fold] if A.fold.m > 1 and A.fold.change_in is None else []) + [FoldPlan.identity(A.structure)]
    for plan in candidates:
        if _is_realified(plan.block) and _paired(plan.perm):
            wm = np.stack([plan.block[:, 0::2, 0::2], plan.block[:, 1::2, 0::2]], axis=-1)     # (d, q, q, 2)
            q = plan.p // 2
            direct = wm.shape[0] == 2 * q * q and np.array_equal(wm.reshape(A.dim, -1), np.eye(A.dim))
            return ComplexPlan(plan.m, q, _complex_fold(plan), np.ascontiguousarray(wm), bool(direct))
    if A.fold.m > 1 and A.fold.change_in is not None:
        return _through_change(A)
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


def change_macs(A: Algebra, in_seen: int, out_seen: int) -> int:
    """MACs of a basis change around the complex GEMM: d^2 per activation element entering and leaving (0 for a
    plan without one)."""
    cp = complex_plan(A)
    return 0 if cp is None or cp.change_in is None else (in_seen + out_seen) * A.dim * A.dim


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


def _complex_in(x: torch.Tensor, cp: ComplexPlan, C: int) -> torch.Tensor:
    """(N, C*d, *S) real -> (N, C*d/2, *S) complex, element-major: a view for a linear layer (no S) without a
    change; a conv copies to the interleaved layout, a change multiplies every element by change_in first."""
    N, sp = x.shape[0], tuple(x.shape[2:])
    d = x.shape[1] // C
    if cp.change_in is None:
        if not sp:
            return torch.view_as_complex(x.contiguous().view(N, C * d // 2, 2))
        return torch.view_as_complex(x.reshape(N, C * d // 2, 2, *sp).movedim(2, -1).contiguous())
    M = cp.matrix("in", x.dtype, x.device).view(d // 2, 2, d)
    xe = torch.einsum("jrk,nck...->ncj...r", M, x.reshape(N, C, d, *sp)).contiguous()
    return torch.view_as_complex(xe).reshape(N, C * d // 2, *sp)


def _real_out(yc: torch.Tensor, cp: ComplexPlan, C: int) -> torch.Tensor:
    """Inverse of `_complex_in`: (N, C*d/2, *S) complex -> (N, C*d, *S) real (change_out applied)."""
    N, sp = yc.shape[0], tuple(yc.shape[2:])
    h = yc.shape[1] // C
    yr = torch.view_as_real(yc)
    if cp.change_in is None:
        return (yr if not sp else yr.movedim(-1, 2)).reshape(N, C * 2 * h, *sp)
    M = cp.matrix("out", yr.dtype, yr.device).view(2 * h, h, 2)
    return torch.einsum("kjr,ncj...r->nck...", M, yr.reshape(N, C, h, *sp, 2)).reshape(N, C * 2 * h, *sp)


def complex_linear(weight: torch.Tensor, bias: torch.Tensor | None,
                   A: Algebra) -> Callable[[torch.Tensor], torch.Tensor]:
    """weight (out, in, d), bias (out, d) or None -> a step (N, in*d) -> (N, out*d); the complex weight made once."""
    cp = require(A)
    W = _weight(weight, A, cp, False)
    O, I, d = weight.shape[0], weight.shape[1], A.dim

    def step(x: torch.Tensor) -> torch.Tensor:
        N = x.shape[0]
        if N == 0:            # complex views need a unit last stride, which empty tensors need not have
            return block_linear(weight, bias, A)(x)
        xc = _complex_in(x.to(weight.dtype), cp, I)                                          # (N, I*d/2)
        if cp.plan is None:
            return torch.view_as_real(F.linear(xc, W, _complex_bias(bias))).view(N, O * d)
        yc = unfold_out(F.linear(fold_in(xc, cp.plan, I), W), cp.plan, O)       # (N*m, I*q) -> (N*m, O*q) -> (N, O*d/2)
        y = _real_out(yc, cp, O)
        return y if bias is None else y + bias.to(y.dtype).reshape(-1)
    return step


def complex_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra,
                 geometry: ConvGeometry) -> torch.Tensor:
    """x (N, C_in*d, *S) with symmetric zero padding in `geometry` -> (N, C_out*d, *S'), torch's complex
    (transposed) convolution on the interleaved copy of x."""
    cp = require(A)
    if x.shape[0] == 0:        # (as in complex_linear: an empty batch is the block path's empty result)
        return block_conv(x, weight, bias, A, geometry)
    g = geometry
    d = A.dim
    W = _weight(weight, A, cp, g.transposed)
    x = x.to(weight.dtype)
    C_in = x.shape[1] // d
    C_out = weight.shape[1] * g.groups if g.transposed else weight.shape[0]
    xc = _complex_in(x, cp, C_in)                                                            # (N, C_in*d/2, *S)
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
    y = _real_out(yc, cp, C_out)
    if cp.plan is not None and bias is not None:
        y = y + bias.to(y.dtype).reshape(1, C_out * d, *([1] * (y.dim() - 2)))
    return y
