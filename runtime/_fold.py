"""Column folding: one real GEMM / conv for a weight-left algebra layer whose left-regular representation splits
into m identical p x p blocks (the fold plan, found exactly by the build and stored in the manifest; see
`runtime.registry.FoldPlan`).

    (w * x)[perm[c*p + t]] = sum_s B(w)[t, s] x[perm[c*p + s]]          for every block c < m,

so the m blocks of each activation element are folded into the batch and the layer becomes ONE real GEMM / conv
with a (out*p) x (in*p) weight: p^2 = d^2/m MACs per element pair instead of d^2.  For M_n(R) the blocks are the
n columns of the activation matrix (m = n, p = n); for M_2(C) its two complex columns (m = 2, p = 4).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import _workspace as ws
from .registry import FoldPlan

__all__ = ["FoldPlan", "fold_in", "unfold_out", "FoldLinearFn", "FoldConvFn"]


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


def _change(x: torch.Tensor, M: torch.Tensor, C: int) -> torch.Tensor:
    """Each element of x (N, C*d, *sp) multiplied by the (d, d) matrix M: one GEMM."""
    N, d = x.shape[0], M.shape[0]
    if x.dim() == 2:
        return torch.mm(x.reshape(N * C, d), M.t()).view(N, C * d)
    return torch.matmul(M, x.reshape(N, C, d, -1)).view(x.shape)


def fold_in(x: torch.Tensor, plan: FoldPlan, C: int, pool: bool = False, channels_last: bool = False,
            adjoint: bool = False) -> torch.Tensor:
    """(N, C*d, *sp) -> (N*m, C*p, *sp): the m blocks of every element go to the batch (one copy).

    pool=True takes the result from the scratch pool (the caller gives it back); channels_last=True (with
    pool, 1 or more spatial dims) lays the result out channels-last (the copy is needed anyway, and oneDNN
    convolutions run faster on that layout).  A plan with a basis change first applies F to every element
    (adjoint=True: G transposed, for output gradients)."""
    if plan.change_in is not None:
        x = _change(x, plan.matrix("out_T" if adjoint else "in", x.dtype, x.device), C)
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
               adjoint: bool = False) -> torch.Tensor:
    """Inverse of fold_in, plus an optional bias (C, d): (N*m, C*p, *sp) -> (N, C*d, *sp), one pass.  A plan with
    a basis change then applies G to every element (adjoint=True: F transposed, for input gradients)."""
    if plan.change_in is not None:
        y = _change(unfold_out(yf, plan.plain, C), plan.matrix("in_T" if adjoint else "out", yf.dtype, yf.device), C)
        return y if bias is None else y.add_(bias.reshape(1, -1, *([1] * (y.dim() - 2))))
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
                dx = unfold_out(dxf, plan, C_in, adjoint=True)
        if pool:
            ws.give(xf)
            ctx.xf = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.reshape(g.shape[0], C_out, plan.m * plan.p, math.prod(g.shape[2:])).sum(
                (0, 3), dtype=torch.float32 if g.dtype in _HALF else None)
        return dx, dB, db, None, None, None, None, None, None, None, None, None
