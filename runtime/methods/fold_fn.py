"""Column folding: one real GEMM / conv for a weight-left algebra layer whose left-regular representation splits
into m identical p x p blocks (the fold plan, found exactly by the build and stored in the manifest; see
`runtime.registry.FoldPlan`).

    (w * x)[perm[c*p + t]] = sum_s B(w)[t, s] x[perm[c*p + s]]          for every block c < m,

so the m blocks of each activation element are folded into the batch and the layer becomes ONE real GEMM / conv
with a (out*p) x (in*p) weight: p^2 = d^2/m MACs per element pair instead of d^2.  For M_n(R) the blocks are the
n columns of the activation matrix (m = n, p = n); for M_2(C) its two complex columns (m = 2, p = 4).

A plan with a basis change (x -> F x on the way in, y -> G y on the way out, per element) costs no extra pass
for a linear layer: its folded activations are component-major (columns (s, c) instead of (c, s), the weight
expanded alike), so the change and the fold are one batched GEMM per call.  A convolution keeps its
channels-last folded layout (its convolutions need it); there the change is one batched GEMM over the spatial
positions (into pooled memory) next to the fold copy.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..registry import FoldPlan
from . import workspace as ws

__all__ = ["FoldPlan", "fold_in", "unfold_out", "fold_planar", "FoldLinearFn", "FoldConvFn"]


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


def fold_planar(plan: FoldPlan, conv: bool) -> bool:
    """Whether the folded activations are component-major, (N*m, p*C) with column s*C + c: a linear layer folding
    through a basis change.  Its folded weight must then have rows (t, o) and columns (s, i)."""
    return not conv and plan.change_in is not None


def _change(x: torch.Tensor, M: torch.Tensor, C: int, pool: bool) -> torch.Tensor:
    """Each element of x (N, C*d, *sp) multiplied by the (d, d) matrix M: one batched GEMM, (d x d) times
    (d x prod(sp)) per element (the spatial positions are the long contiguous side, which BLAS runs at memory
    speed).  pool=True: the result is scratch memory from the pool (the caller gives it back)."""
    N, d = x.shape[0], M.shape[0]
    xs = x.reshape(N * C, d, math.prod(x.shape[2:]))            # explicit sizes: N may be 0
    Me = M.expand(N * C, d, d)
    if not pool:
        return torch.bmm(Me, xs).view(x.shape)
    return torch.bmm(Me, xs, out=ws.take(x.numel(), x.dtype, x.device).view(xs.shape)).view(x.shape)


def _fold_planar(x: torch.Tensor, M: torch.Tensor, plan: FoldPlan, C: int, pool: bool) -> torch.Tensor:
    """(N, C*d) -> (N*m, p*C) component-major: xf[n*m + c, s*C + i] = sum_k M[c*p + s, k] x[n, i*d + k], with M
    in folded order: N GEMMs (d x d) times (d x C) in one call, writing the folded layout directly."""
    N, d = x.shape[0], M.shape[0]
    src = x.view(N, C, d).transpose(1, 2)
    Me = M.expand(N, d, d)
    xf = torch.bmm(Me, src, out=ws.take(x.numel(), x.dtype, x.device).view(N, d, C)) if pool else torch.bmm(Me, src)
    return xf.view(N * plan.m, plan.p * C)


def _unfold_planar(yf: torch.Tensor, M: torch.Tensor, plan: FoldPlan, C: int) -> torch.Tensor:
    """Inverse layout of _fold_planar: (N*m, p*C) -> (N, C*d), y[n, i*d + k] = sum_j M[k, j] yf[n*m + j // p,
    (j % p)*C + i], M in folded order (columns)."""
    N, d = yf.shape[0] // plan.m, M.shape[0]
    return torch.bmm(yf.view(N, d, C).transpose(1, 2), M.t().expand(N, d, d)).view(N, C * d)


def fold_in(x: torch.Tensor, plan: FoldPlan, C: int, pool: bool = False, channels_last: bool = False,
            adjoint: bool = False) -> torch.Tensor:
    """(N, C*d, *sp) -> (N*m, C*p, *sp): the m blocks of every element go to the batch (one copy).

    pool=True takes the result from the scratch pool (the caller gives it back); channels_last=True (with
    pool, 1 or more spatial dims) lays the result out channels-last (the copy is needed anyway, and oneDNN
    convolutions run faster on that layout).  A plan with a basis change first applies F to every element
    (adjoint=True: G transposed, for output gradients); for 2-D x (a linear layer) the result is then
    component-major (`fold_planar`) and change and fold are one batched GEMM."""
    if plan.change_in is not None:
        which = "out_T" if adjoint else "in"
        if x.dim() == 2:
            return _fold_planar(x, plan.matrix(which, x.dtype, x.device, folded=True), plan, C, pool)
        changed = _change(x, plan.matrix(which, x.dtype, x.device), C, pool)
        xf = fold_in(changed, plan.plain, C, pool, channels_last)
        if pool:
            ws.give(changed)
        return xf
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


def unfold_out(yf: torch.Tensor, plan: FoldPlan, C: int, bias: torch.Tensor | None = None,
               adjoint: bool = False, pool: bool = False) -> torch.Tensor:
    """Inverse of fold_in, plus an optional bias (C, d): (N*m, C*p, *sp) -> (N, C*d, *sp), one pass.  A plan with
    a basis change then applies G to every element (adjoint=True: F transposed, for input gradients): for 2-D yf
    (component-major, a linear layer) in the same pass, else as one batched GEMM from an unfolded copy (in pooled
    memory when pool=True).  The result is never pooled."""
    if plan.change_in is not None:
        which = "in_T" if adjoint else "out"
        if yf.dim() == 2:
            y = _unfold_planar(yf, plan.matrix(which, yf.dtype, yf.device, folded=True), plan, C)
        elif pool and C * math.prod(yf.shape[2:]) >= _UNFOLD_GEMM_MIN:
            return _unfold_gemm(yf, plan.matrix(which, yf.dtype, yf.device, folded=True), plan, C, bias)
        else:
            unfolded = _unfold_plain(yf, plan.plain, C, None, pool)
            y = _change(unfolded, plan.matrix(which, yf.dtype, yf.device), C, False)
            if pool:
                ws.give(unfolded)
        return y if bias is None else y.add_(bias.reshape(1, -1, *([1] * (y.dim() - 2))))
    return _unfold_plain(yf, plan, C, bias, False)


_UNFOLD_GEMM_MIN = 4096     # elements x positions per batch item from which _unfold_gemm's per-item calls pay


def _unfold_gemm(yf: torch.Tensor, M: torch.Tensor, plan: FoldPlan, C: int, bias: torch.Tensor | None) -> torch.Tensor:
    """unfold_out through a change for a convolution, unfold and change in one pass: per batch item n and block c,
    y[n, i] (d, S) += M[:, c-block] (d x p) times yf[n*m + c, i*p:(i+1)*p] (p x S), a batched GEMM over the C
    elements reading the folded output in whatever layout the convolution left it (channels-last or not) and
    writing y with the positions contiguous; the bias is added while y[n] is in cache.  M in folded order
    (columns).  Not differentiable (out=): the caller uses it only outside create_graph."""
    m, p = plan.m, plan.p
    N, sp = yf.shape[0] // m, tuple(yf.shape[2:])
    d, S = m * p, math.prod(sp)
    Z = yf.reshape(N, m, C, p, S)
    Ms = [M[:, c * p:(c + 1) * p].contiguous().expand(C, d, p) for c in range(m)]
    b = None if bias is None else bias.reshape(C, d, 1)
    y = torch.empty((N, C, d, S), dtype=yf.dtype, device=yf.device)
    for n in range(N):
        torch.bmm(Ms[0], Z[n, 0], out=y[n])
        for c in range(1, m):
            y[n].baddbmm_(Ms[c], Z[n, c])
        if b is not None:
            y[n].add_(b)
    return y.view(N, C * d, *sp)


def _unfold_plain(yf: torch.Tensor, plan: FoldPlan, C: int, bias: torch.Tensor | None, pool: bool) -> torch.Tensor:
    """unfold_out of a plan without a change; pool=True writes the result into pooled memory."""
    m, p = plan.m, plan.p
    N = yf.shape[0] // m
    sp = tuple(yf.shape[2:])
    d = m * p
    ns = len(sp)
    if plan.view_shape is None:
        inv = torch.as_tensor(np.argsort(plan.perm), device=yf.device)
        yv = yf.reshape(N, m, C, p, *sp).transpose(1, 2).reshape(N, C, d, *sp)
        if pool:
            y = torch.index_select(yv, 2, inv, out=ws.take(yf.numel(), yf.dtype, yf.device).view(N, C, d, *sp))
        else:
            y = yv.index_select(2, inv)
        y = y.view(N, C * d, *sp)
        return y if bias is None else y.add_(bias.reshape(1, C * d, *([1] * ns)))
    src = _unfolded_view(yf, plan, C)
    if torch.compiler.is_compiling():        # no out= under compile: let the compiler fuse add + copy
        b = 0 if bias is None else bias.reshape(1, C, *plan.view_shape, *([1] * ns))
        return (src + b).reshape(N, C * d, *sp)
    shape = (N, C, *plan.view_shape, *sp)
    out = ws.take(yf.numel(), yf.dtype, yf.device).view(shape) if pool else torch.empty(shape, dtype=yf.dtype,
                                                                                         device=yf.device)
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
    """(x, B, xf, pool) as stored by `_save_folded`; xf is None when it was handed back.

    Under create_graph=True (grad mode on in the backward) the backward must be recorded by autograd: it then
    runs on plain differentiable ops (pool False, no out=) and re-folds x, so second derivatives are exact."""
    if ctx.pooled:
        x, B = ctx.saved_tensors
        xf = getattr(ctx, "xf", None)
    else:
        x, B, xf = ctx.saved_tensors
    if not torch.is_grad_enabled():
        return x, B, xf, ctx.pooled
    if ctx.pooled and xf is not None:
        ws.give(xf)
        ctx.xf = None
    return x, B, None, False


class FoldLinearFn(torch.autograd.Function):
    """y (N, out*d) = unfold(fold(x) @ B^T) + bias with B (out*p, in*p) the folded real weight.

    Internal temporaries (folded activations / gradients, the folded GEMM outputs) come from the scratch
    pool; the backward is the same two folded GEMMs (dx: g_f B, dB: g_f^T x_f) as a real linear layer, and is
    itself differentiable under create_graph=True."""

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
        x, B, xf, pool = _saved_folded(ctx)
        g = g.contiguous()
        gf = fold_in(g, plan, C_out, pool=pool, adjoint=True)
        dx = dB = db = None
        if ctx.needs_input_grad[1]:
            if xf is None:                      # handed back, or a second backward (retain_graph): fold again
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
            dx = unfold_out(dxf, plan, C_in, adjoint=True)
            if pool:
                ws.give(dxf)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.view(g.shape[0], C_out, plan.m * plan.p).sum(0, dtype=torch.float32 if g.dtype in _HALF else None)
        if pool:
            ws.give(gf)
        return dx, dB, db, None, None, None


class FoldConvFn(torch.autograd.Function):
    """Folded convolution: y = unfold(conv(fold(x), B)) + bias, B (C_out*p, C_in/groups*p, *k); transposed:
    conv_transpose with B (C_in*p, C_out/groups*p, *k) and output_padding, as torch lays them out.  Twice
    differentiable like FoldLinearFn."""

    @staticmethod
    def forward(ctx, x, B, bias, plan, C_in, C_out, stride, padding, dilation, groups, transposed=False,
                output_padding=None):
        pool = ws.pooled(x.device)
        cl = x.dim() in (4, 5)
        xf = fold_in(x, plan, C_in, pool=pool, channels_last=cl)
        nd = x.dim() - 2
        opad = [0] * nd if output_padding is None else list(output_padding)
        yf = torch.ops.aten.convolution(xf, B, None, stride, padding, dilation, transposed, opad, groups)
        y = unfold_out(yf, plan, C_out, None if bias is None else bias.to(yf.dtype), pool=pool)
        ctx.plan, ctx.C = plan, (C_in, C_out)
        ctx.conv = (list(stride), list(padding), list(dilation), groups, transposed, opad)
        ctx.has_bias = bias is not None
        ctx.cl = cl
        _save_folded(ctx, x, B, xf, pool)
        return y

    @staticmethod
    def backward(ctx, g):
        plan, (C_in, C_out) = ctx.plan, ctx.C
        stride, padding, dilation, groups, transposed, opad = ctx.conv
        x, B, xf, pool = _saved_folded(ctx)
        cl = ctx.cl and pool
        g = g.contiguous()
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx = dB = db = None
        if xf is None:
            if need_w or not pool:          # handed back or a second backward: fold again
                xf = fold_in(x, plan, C_in, pool=pool, channels_last=cl)
            else:                           # only its shape matters
                N = x.shape[0]
                shape = (N * plan.m, C_in * plan.p, *x.shape[2:])
                xf = ws.take(math.prod(shape), x.dtype, x.device).view(shape)
                if cl:
                    xf = xf.view(shape[0], *shape[2:], shape[1]).movedim(-1, 1)
        if need_x or need_w:
            gf = fold_in(g, plan, C_out, pool=pool, channels_last=cl, adjoint=True)
            dxf, dB, _ = torch.ops.aten.convolution_backward(
                gf, xf, B, None, stride, padding, dilation, transposed, opad, groups, [need_x, need_w, False])
            if pool:
                ws.give(gf)
            if need_x:
                dx = unfold_out(dxf, plan, C_in, adjoint=True, pool=pool)
        if pool:
            ws.give(xf)
            ctx.xf = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.reshape(g.shape[0], C_out, plan.m * plan.p, math.prod(g.shape[2:])).sum(
                (0, 3), dtype=torch.float32 if g.dtype in _HALF else None)
        return dx, dB, db, None, None, None, None, None, None, None, None, None
