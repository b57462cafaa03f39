"""Column folding: detect, from the structure tensor alone, when left multiplication splits into equal blocks.

For a weight-left layer `y = w * x` only the left-regular representation L(w)[k, j] = sum_i T[i, j, k] w_i
matters.  If some permutation `perm` of the basis makes every L(w) block-diagonal with m identical p x p
blocks B(w) (p = d / m), then

    (w * x)[perm[c*p + t]] = sum_s B(w)[t, s] x[perm[c*p + s]]          for every block c < m,

so the m blocks of each activation element can be folded into the batch and the whole layer becomes ONE real
GEMM / conv with a (out*p) x (in*p) weight: p^2 = d^2/m MACs per element pair instead of d^2.  For M_n(R) in
the row-major basis the blocks are the n columns of the activation matrix (m = n, p = n, n^3 MACs); for
M_2(C) they are its two complex columns (m = 2, p = 4).  Nothing here looks at algebra names.

Detection:
1. Connected components of the graph with an edge j - k whenever some T[i, j, k] != 0 (j and k are
   coupled by left multiplication).  These are the finest blocks any permutation can give.
2. All components must have the same size p, and for every component c there must be a bijection sigma_c
   from component 0 with T[:, sigma_c(s), sigma_c(t)] == T[:, s, t] for all s, t (identical blocks); found
   by backtracking with pruning (p is at most a few dozen).
If either fails the plan has m = 1 (one block: the block-matrix path).

The permutation is also matched to a strided view when possible (the basis viewed as a small
multi-dimensional array whose axes are reordered), so that folding costs one permute-copy rather than a
gather.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from . import _workspace as ws

__all__ = ["FoldPlan", "fold_plan", "fold_in", "unfold_out", "FoldLinearFn", "FoldConvFn"]


@dataclass(frozen=True)
class FoldPlan:
    """How to fold one algebra's activations.

    m, p: number of identical blocks and their size (m * p = d; m == 1 means no folding).
    perm: (d,) basis index of block c, position s at perm[c*p + s].
    block: (d, p, p) float64, B(w)[t, s] = sum_a block[a, t, s] w_a.
    view_shape, view_axes, split: when not None, perm == arange(d).reshape(view_shape).transpose(view_axes)
        .ravel(), and the first `split` reordered axes multiply to m (the block index), the rest to p.
    """

    m: int
    p: int
    perm: tuple[int, ...]
    block: np.ndarray
    view_shape: tuple[int, ...] | None
    view_axes: tuple[int, ...] | None
    split: int | None

    @property
    def folds(self) -> bool:
        return self.m > 1


def _components(T: np.ndarray) -> list[list[int]]:
    d = T.shape[0]
    coupled = np.any(T != 0, axis=0)            # (j, k)
    coupled = coupled | coupled.T
    seen = [False] * d
    comps = []
    for start in range(d):
        if seen[start]:
            continue
        stack, comp = [start], []
        seen[start] = True
        while stack:
            j = stack.pop()
            comp.append(j)
            for k in np.nonzero(coupled[j])[0]:
                if not seen[k]:
                    seen[k] = True
                    stack.append(int(k))
        comps.append(sorted(comp))
    comps.sort(key=lambda c: c[0])
    return comps


def _match(T: np.ndarray, base: list[int], other: list[int]) -> list[int] | None:
    """A bijection sigma: base -> other (as a list aligned with base) preserving T[:, s, t], or None."""
    p = len(base)
    sigma: list[int] = []
    used = [False] * p

    def consistent(pos: int, cand: int) -> bool:
        s = base[pos]
        if not np.array_equal(T[:, s, s], T[:, cand, cand]):
            return False
        for q in range(pos):
            a, b = base[q], sigma[q]
            if not (np.array_equal(T[:, s, a], T[:, cand, b]) and np.array_equal(T[:, a, s], T[:, b, cand])):
                return False
        return True

    def search(pos: int) -> bool:
        if pos == p:
            return True
        for idx in range(p):
            if used[idx]:
                continue
            cand = other[idx]
            if consistent(pos, cand):
                used[idx] = True
                sigma.append(cand)
                if search(pos + 1):
                    return True
                sigma.pop()
                used[idx] = False
        return False

    return list(sigma) if search(0) else None


def _factorisations(d: int, max_len: int = 4):
    """Ordered factorisations of d into factors > 1 (at most max_len of them)."""
    out = []

    def rec(rest, prefix):
        if rest == 1 and prefix:
            out.append(tuple(prefix))
            return
        if len(prefix) == max_len:
            return
        for f in range(2, rest + 1):
            if rest % f == 0:
                rec(rest // f, prefix + [f])

    rec(d, [])
    return sorted(out, key=len)


def _strided_view(perm: np.ndarray, m: int):
    d = len(perm)
    base = np.arange(d)
    for shape in _factorisations(d):
        arr = base.reshape(shape)
        for axes in itertools.permutations(range(len(shape))):
            if not np.array_equal(arr.transpose(axes).ravel(), perm):
                continue
            sizes = [shape[a] for a in axes]
            for split in range(1, len(shape)):
                if math.prod(sizes[:split]) == m:
                    return tuple(shape), tuple(axes), split
    return None


def fold_plan(T: np.ndarray) -> FoldPlan:
    """The fold plan of a structure tensor T (d, d, d) with (x*y)_k = sum_ij T[i,j,k] x_i y_j."""
    T = np.asarray(T, dtype=np.float64)
    d = T.shape[0]
    ident = FoldPlan(1, d, tuple(range(d)), np.ascontiguousarray(T.transpose(0, 2, 1)), None, None, None)
    comps = _components(T)
    m = len(comps)
    if m == 1 or any(len(c) != len(comps[0]) for c in comps):
        return ident
    base = comps[0]
    order = [list(base)]
    for other in comps[1:]:
        sigma = _match(T, base, other)
        if sigma is None:
            return ident
        order.append(sigma)
    perm = np.array([i for block in order for i in block])
    p = d // m
    block = np.ascontiguousarray(T[:, base][:, :, base].transpose(0, 2, 1))   # block[a, t, s] = T[a, s, t]
    sv = _strided_view(perm, m)
    if sv is None:
        return FoldPlan(m, p, tuple(int(i) for i in perm), block, None, None, None)
    return FoldPlan(m, p, tuple(int(i) for i in perm), block, *sv)


_HALF = (torch.float16, torch.bfloat16)


# ------------------------------------------------------------------------------------------ layouts
def _fold_dims(plan: FoldPlan, ns: int) -> list[int]:
    """Permutation taking x.view(N, C, *view_shape, *sp) to (N, *m-axes, C, *p-axes, *sp)."""
    k = len(plan.view_shape)
    axes, split = plan.view_axes, plan.split
    return ([0] + [2 + a for a in axes[:split]] + [1] + [2 + a for a in axes[split:]]
            + [2 + k + i for i in range(ns)])


def _folded_view(x: torch.Tensor, plan: FoldPlan, C: int) -> torch.Tensor:
    """(N, C*d, *sp) -> a view with the dims of (N, m, C, p, *sp) in folded order (strided plans)."""
    N = x.shape[0]
    sp = x.shape[2:]
    return x.reshape(N, C, *plan.view_shape, *sp).permute(_fold_dims(plan, len(sp)))


def fold_in(x: torch.Tensor, plan: FoldPlan, C: int, pool: bool = False, channels_last: bool = False) -> torch.Tensor:
    """(N, C*d, *sp) -> (N*m, C*p, *sp): the m blocks of every element go to the batch (one copy).

    pool=True takes the result from the scratch pool (the caller gives it back); channels_last=True (with
    pool, 1 or more spatial dims) lays the result out channels-last (the copy is needed anyway, and oneDNN
    convolutions run faster on that layout)."""
    N = x.shape[0]
    sp = tuple(x.shape[2:])
    ns = len(sp)
    m, p = plan.m, plan.p
    shape = (N * m, C * p, *sp)
    if plan.view_shape is not None:
        src = _folded_view(x, plan, C)
        a = plan.split
    else:
        idx = torch.as_tensor(plan.perm, device=x.device)
        src = x.reshape(N, C, m * p, *sp).index_select(2, idx).view(N, C, m, p, *sp).transpose(1, 2)
        a = 1
    if not pool:
        return src.reshape(shape)
    out = ws.take(math.prod(shape), x.dtype, x.device)
    if not (channels_last and ns):
        out.view(src.shape).copy_(src)
        return out.view(shape)
    nsrc = src.dim()
    order = [0] + list(range(1, a + 1)) + list(range(nsrc - ns, nsrc)) + list(range(a + 1, nsrc - ns))
    phys = out.view([src.shape[i] for i in order])
    inverse = [order.index(i) for i in range(nsrc)]
    phys.permute(inverse).copy_(src)
    return out.view(N * m, *sp, C * p).movedim(-1, 1)


def _unfolded_view(yf: torch.Tensor, plan: FoldPlan, C: int) -> torch.Tensor:
    """(N*m, C*p, *sp) -> a (N, C, *view_shape, *sp) permuted view (strided plans only)."""
    m = plan.m
    N = yf.shape[0] // m
    sp = yf.shape[2:]
    k = len(plan.view_shape)
    axes, split = plan.view_axes, plan.split
    sizes = [plan.view_shape[a] for a in axes]
    yv = yf.reshape(N, *sizes[:split], C, *sizes[split:], *sp)
    pos = {axes[t]: (1 + t if t < split else 2 + t) for t in range(k)}
    dims = [0, split + 1] + [pos[a] for a in range(k)] + [k + 2 + i for i in range(len(sp))]
    return yv.permute(dims)


def unfold_out(yf: torch.Tensor, plan: FoldPlan, C: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of fold_in, plus an optional bias (C, d): (N*m, C*p, *sp) -> (N, C*d, *sp), one pass."""
    m, p = plan.m, plan.p
    N = yf.shape[0] // m
    sp = tuple(yf.shape[2:])
    d = m * p
    ns = len(sp)
    if plan.view_shape is None:
        inv = torch.as_tensor(np.argsort(plan.perm), device=yf.device)
        yv = yf.reshape(N, m, C, p, *sp).transpose(1, 2).reshape(N, C, d, *sp)
        y = yv.index_select(2, inv).reshape(N, C * d, *sp)
        return y if bias is None else y.add_(bias.reshape(1, C * d, *([1] * ns)))
    src = _unfolded_view(yf, plan, C)
    if torch.compiler.is_compiling():        # no out= under compile: let the compiler fuse add + copy
        b = 0 if bias is None else bias.reshape(1, C, *plan.view_shape, *([1] * ns))
        return (src + b).reshape(N, C * d, *sp)
    out = torch.empty((N, C, *plan.view_shape, *sp), dtype=yf.dtype, device=yf.device)
    if bias is None:
        out.copy_(src)
    else:
        torch.add(src, bias.reshape(1, C, *plan.view_shape, *([1] * ns)), out=out)
    return out.view(N, C * d, *sp)


# ------------------------------------------------------------------------------------ autograd ops
def _save_folded(ctx, x: torch.Tensor, B: torch.Tensor, xf: torch.Tensor, pool: bool) -> None:
    """Keep what the folded backward needs.  A pooled xf is scratch memory: keep it only when the weight
    gradient needs it, else hand it back now (the backward re-folds it or only needs its shape)."""
    ctx.pooled = pool
    if pool:
        ctx.save_for_backward(x, B)
        ctx.xf = xf if ctx.needs_input_grad[1] else None
        if ctx.xf is None:
            ws.give(xf)
    else:
        ctx.save_for_backward(x, B, xf)


def _saved_folded(ctx) -> tuple:
    """(x, B, xf) as stored by `_save_folded`; xf is None when it was handed back."""
    if ctx.pooled:
        x, B = ctx.saved_tensors
        return x, B, getattr(ctx, "xf", None)
    return ctx.saved_tensors


class FoldLinearFn(torch.autograd.Function):
    """y (N, out*d) = unfold(fold(x) @ B^T) + bias with B (out*p, in*p) the folded real weight.

    Internal temporaries (folded activations / gradients, the folded GEMM outputs) come from the scratch
    pool; the backward is the same two folded GEMMs (dx: g_f B, dB: g_f^T x_f) as a real linear layer."""

    @staticmethod
    def forward(ctx, x, B, bias, plan, C_in, C_out):
        pool = ws.pooled(x.device)
        xf = fold_in(x, plan, C_in, pool=pool)
        yf = ws.take(xf.shape[0] * B.shape[0], x.dtype, x.device).view(xf.shape[0], B.shape[0]) if pool else None
        yf = torch.mm(xf, B.t(), out=yf) if pool else torch.mm(xf, B.t())
        y = unfold_out(yf, plan, C_out, None if bias is None else bias.to(yf.dtype))
        if pool:
            ws.give(yf)
        ctx.plan, ctx.C = plan, (C_in, C_out)
        ctx.has_bias = bias is not None
        _save_folded(ctx, x, B, xf, pool)
        return y

    @staticmethod
    def backward(ctx, g):
        plan, (C_in, C_out) = ctx.plan, ctx.C
        pool = ctx.pooled
        x, B, xf = _saved_folded(ctx)
        g = g.contiguous()
        gf = fold_in(g, plan, C_out, pool=pool)
        dx = dB = db = None
        if ctx.needs_input_grad[1]:
            if xf is None:                      # a second backward (retain_graph): fold again
                xf = fold_in(x, plan, C_in, pool=pool)
            dB = torch.mm(gf.t(), xf)
            if pool:
                ws.give(xf)
                ctx.xf = None
        if ctx.needs_input_grad[0]:
            if pool:
                dxf = torch.mm(gf, B, out=ws.take(gf.shape[0] * B.shape[1], g.dtype, g.device)
                               .view(gf.shape[0], B.shape[1]))
            else:
                dxf = torch.mm(gf, B)
            dx = unfold_out(dxf, plan, C_in)
            if pool:
                ws.give(dxf)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.view(g.shape[0], C_out, plan.m * plan.p).sum(0, dtype=torch.float32 if g.dtype in _HALF else None)
        if pool:
            ws.give(gf)
        return dx, dB, db, None, None, None


class FoldConvFn(torch.autograd.Function):
    """Folded convolution: y = unfold(conv(fold(x), B)) + bias, B (C_out*p, C_in/groups*p, *k); transposed:
    conv_transpose with B (C_in*p, C_out/groups*p, *k) and output_padding, as torch lays them out."""

    @staticmethod
    def forward(ctx, x, B, bias, plan, C_in, C_out, stride, padding, dilation, groups, transposed=False,
                output_padding=None):
        pool = ws.pooled(x.device)
        cl = x.dim() in (4, 5)
        xf = fold_in(x, plan, C_in, pool=pool, channels_last=cl)
        nd = x.dim() - 2
        opad = [0] * nd if output_padding is None else list(output_padding)
        yf = torch.ops.aten.convolution(xf, B, None, stride, padding, dilation, transposed, opad, groups)
        y = unfold_out(yf, plan, C_out, None if bias is None else bias.to(yf.dtype))
        ctx.plan, ctx.C = plan, (C_in, C_out)
        ctx.conv = (list(stride), list(padding), list(dilation), groups, transposed, opad)
        ctx.has_bias = bias is not None
        ctx.cl = cl
        _save_folded(ctx, x, B, xf, pool)
        return y

    @staticmethod
    def backward(ctx, g):
        plan, (C_in, C_out) = ctx.plan, ctx.C
        cl = ctx.cl
        stride, padding, dilation, groups, transposed, opad = ctx.conv
        pool = ctx.pooled
        x, B, xf = _saved_folded(ctx)
        g = g.contiguous()
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx = dB = db = None
        if xf is None:
            if need_w:                      # a second backward (retain_graph): fold again
                xf = fold_in(x, plan, C_in, pool=pool, channels_last=cl)
            else:                           # only its shape matters
                N = x.shape[0]
                shape = (N * plan.m, C_in * plan.p, *x.shape[2:])
                xf = ws.take(math.prod(shape), x.dtype, x.device).view(shape)
                if cl and pool:
                    xf = xf.view(shape[0], *shape[2:], shape[1]).movedim(-1, 1)
        if need_x or need_w:
            gf = fold_in(g, plan, C_out, pool=pool, channels_last=cl)
            dxf, dB, _ = torch.ops.aten.convolution_backward(
                gf, xf, B, None, stride, padding, dilation, transposed, opad, groups, [need_x, need_w, False])
            if pool:
                ws.give(gf)
            if need_x:
                dx = unfold_out(dxf, plan, C_in)
        if pool:
            ws.give(xf)
            ctx.xf = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.reshape(g.shape[0], C_out, plan.m * plan.p, math.prod(g.shape[2:])).sum(
                (0, 3), dtype=torch.float32 if g.dtype in _HALF else None)
        return dx, dB, db, None, None, None, None, None, None, None, None, None
