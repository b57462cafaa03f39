"""The bilinear (rank-r scheme) path: r real GEMMs / convs per algebra layer, forward and backward.

Scheme: T[i,j,k] = sum_s U[s,i] V[s,j] W[s,k], weight = left factor.  For a layer y_o = sum_i w_oi * x_i:

    forward   Wc[s] = U_s . w   (cached)     Xc[s] = V_s . x      M[s] = Xc[s] Wc[s]^T    y = sum_s W_s M[s]
    grad x    (roles U, W, V):  Gc[s] = W_s . g    dXc[s] = Gc[s] Wc[s]       dx = sum_s V_s dXc[s]
    grad w    (roles V, W, U):  dWc[s] = Gc[s]^T Xc[s]                        dw = sum_s U_s dWc[s]

so training pays r (not d^2) real multiplications per element pair in all three passes, and the gradient
GEMMs share the forward's weight combinations Wc and activation combinations Xc.  Under create_graph=True the
backward runs on plain differentiable ops and recomputes Wc and Xc from the saved weight and input, so second
derivatives (gradient penalties, Hessian-vector products) are exact.  Every linear map (the
V, W and U combinations) is ONE batched op over all r terms and all elements; the r GEMMs are one `bmm`
(linear) or one grouped convolution with r*groups groups (conv).

Half-precision inputs (autocast) run the GEMMs in half precision; the W and U maps (post-additions, weight
gradient) accumulate in float32.
"""
from __future__ import annotations

import math

import torch

from . import workspace as ws

__all__ = ["BilinearLinearFn", "BilinearConvFn", "weight_combinations", "mix_in", "mix_out"]

_HALF = (torch.float16, torch.bfloat16)

# ------------------------------------------------------------------------------------ component maps
def mix_in(x: torch.Tensor, A: torch.Tensor, pool: bool = False) -> torch.Tensor:
    """(N, C, d, S) -> (N, r, C, S): out[n,s,c,:] = sum_j A[s,j] x[n,c,j,:]  (one batched matmul).

    pool=True takes the result (and the transposed copy of x it needs) from the scratch pool."""
    N, C, d, S = x.shape
    r = A.shape[0]
    if not pool:
        return torch.matmul(A, x.transpose(1, 2).reshape(N, d, C * S)).view(N, r, C, S)
    xt = ws.take(N * d * C * S, x.dtype, x.device)
    xt.view(N, d, C, S).copy_(x.transpose(1, 2))
    out = ws.take(N * r * C * S, x.dtype, x.device).view(N, r, C * S)
    torch.matmul(A, xt.view(N, d, C * S), out=out)
    ws.give(xt)
    return out.view(N, r, C, S)


def mix_out(m: torch.Tensor, A: torch.Tensor, pool: bool = False) -> torch.Tensor:
    """(N, r, C, S) -> (N, C, d, S) (fresh): out[n,c,k,:] = sum_s A[s,k] m[n,s,c,:]  (one batched matmul).

    Half-precision m accumulates in float32."""
    N, r, C, S = m.shape
    d = A.shape[1]
    half = m.dtype in _HALF
    cdtype = torch.float32 if half else m.dtype
    if not pool:
        out = torch.matmul(A.t().to(cdtype), m.transpose(1, 2).to(cdtype))
        return out.to(m.dtype) if half else out
    mt = ws.take(N * C * r * S, cdtype, m.device).view(N, C, r, S)
    mt.copy_(m.transpose(1, 2))
    out = torch.empty((N, C, d, S), dtype=cdtype, device=m.device)
    torch.matmul(A.t().to(cdtype), mt, out=out)
    ws.give(mt)
    return out.to(m.dtype) if half else out


def mix_in_cl(x: torch.Tensor, A: torch.Tensor, sp) -> torch.Tensor:
    """Channels-last variant of mix_in (pooled): (N, C, d, S) -> (N, r*C, *sp) laid out (N, *sp, r, C).

    One transposing copy to (N, S, d, C), then one batched matmul over all N*S pixels."""
    N, C, d, S = x.shape
    r = A.shape[0]
    P = N * S
    xt = ws.take(P * d * C, x.dtype, x.device).view(N, S, d, C)
    xt.copy_(x.permute(0, 3, 2, 1))
    out = ws.take(P * r * C, x.dtype, x.device).view(P, r, C)
    torch.bmm(A.expand(P, r, d), xt.view(P, d, C), out=out)
    ws.give(xt)
    return out.view(N, *sp, r * C).movedim(-1, 1)


def mix_out_cl(m: torch.Tensor, A: torch.Tensor, C: int) -> torch.Tensor:
    """Inverse-direction map for channels-last m (N, r*C, *sp): -> (N, C*d, *sp) contiguous (fresh),
    out[n, c*d+k] = sum_s A[s,k] m[n, s*C+c].  Half-precision m accumulates in float32."""
    N = m.shape[0]
    sp = m.shape[2:]
    r, d = A.shape
    S = math.prod(sp)
    P = N * S
    half = m.dtype in _HALF
    cdtype = torch.float32 if half else m.dtype
    mp = m.movedim(1, -1).reshape(P, r, C)
    if half:
        mp = mp.float()
    t = ws.take(P * d * C, cdtype, m.device).view(P, d, C)
    torch.bmm(A.t().to(cdtype).expand(P, d, r), mp, out=t)
    y = torch.empty((N, C, d, S), dtype=m.dtype, device=m.device)
    y.copy_(t.view(N, S, d, C).permute(0, 3, 2, 1))
    ws.give(t)
    return y.view(N, C * d, *sp)


def _post(m: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """(r, R) -> (R, d) (fresh): out[n, k] = sum_s A[s,k] m[s,n], accumulated in float32 for half inputs."""
    if m.dtype in _HALF:
        return torch.matmul(m.t().float(), A.float()).to(m.dtype)
    return torch.matmul(m.t(), A)


def _pre(A: torch.Tensor, x: torch.Tensor, pool: bool) -> torch.Tensor:
    """(R, d) -> (r, R): out[s, n] = sum_j A[s,j] x[n,j]."""
    if not pool:
        return torch.matmul(A, x.t())
    out = ws.take(A.shape[0] * x.shape[0], x.dtype, x.device).view(A.shape[0], x.shape[0])
    return torch.mm(A, x.t(), out=out)


# ------------------------------------------------------------------------------------ balanced bmm
def _row_split(r: int, rows: int) -> int:
    """How many row blocks to cut each of the r GEMMs into so that one bmm keeps every CPU thread busy.

    torch.bmm on CPU runs the batch entries in parallel, each single-threaded: with T threads and r terms,
    ceil(r / T) * T / r of the time is spent (r = 3 on 2 threads: 4/3).  Cutting the rows into k blocks,
    k * r a multiple of T, removes that idle time for one copy of the (small) weight combinations."""
    if torch.compiler.is_compiling():
        return 1
    T = torch.get_num_threads()
    if T <= 1 or r % T == 0 or math.ceil(r / T) * T / r <= 1.05:
        return 1
    k = T // math.gcd(r, T)
    return k if rows % k == 0 and rows // k >= 64 else 1


def _repeat_terms(w: torch.Tensor, k: int) -> torch.Tensor:
    """(r, A, B) -> (r*k, A, B), each term repeated k times (adjacent)."""
    if k == 1:
        return w
    r = w.shape[0]
    return w.unsqueeze(1).expand(r, k, *w.shape[1:]).reshape(r * k, *w.shape[1:])


# ------------------------------------------------------------------------------------------- linear
def weight_combinations(weight: torch.Tensor, U: torch.Tensor, conv: bool) -> torch.Tensor:
    """The scheme's weight combinations wc[s] = sum_a U[s,a] w[..., a] (differentiable).

    weight (O, I, d) -> (r, O, I) for linear; weight (O, I, *k, d) -> (r*O, I, *k), term-major, for conv."""
    d = weight.shape[-1]
    r = U.shape[0]
    wc = torch.matmul(U, weight.reshape(-1, d).t())                        # (r, O*I*K)
    if conv:
        return wc.view(r * weight.shape[0], *weight.shape[1:-1])
    return wc.view(r, weight.shape[0], weight.shape[1])


def _differentiable(ctx) -> bool:
    """In a backward: True when autograd records it (create_graph=True).  The backward then runs on plain
    differentiable ops (no scratch pool, no out=) and recomputes the weight and activation combinations from
    the saved weight and input, so that second derivatives are exact; a pooled xc kept for it goes back."""
    if not torch.is_grad_enabled():
        return False
    if getattr(ctx, "xc", None) is not None:
        ws.give(ctx.xc)
        ctx.xc = None
    return True


def _save(ctx, pool: bool, x, weight, wc, U, V, Wm, xc) -> None:
    """Keep what the backward needs.  A pooled xc is scratch memory: kept as an attribute (not saved) only when
    the weight gradient needs it, given back after the first backward (a second one recomputes it).  The
    weight itself is kept (version-checked) only when it needs a gradient: a create_graph backward
    differentiates the weight combinations through it."""
    ctx.pooled = pool
    ctx.weight_dtype = weight.dtype
    w = weight if ctx.needs_input_grad[1] else None
    if pool:
        ctx.save_for_backward(x, w, wc, U, V, Wm)
        ctx.xc = xc if ctx.needs_input_grad[1] else None
        if ctx.xc is None:
            ws.give(xc)
    else:
        ctx.save_for_backward(x, w, wc, U, V, Wm, xc)


def _saved(ctx) -> tuple:
    """(x, weight or None, wc, U, V, Wm, xc or None) as stored by `_save`."""
    if ctx.pooled:
        return (*ctx.saved_tensors, getattr(ctx, "xc", None))
    return ctx.saved_tensors


def _weight_grad(flat: torch.Tensor, U: torch.Tensor, shape, dtype) -> torch.Tensor:
    """(R, r) term gradients -> weight gradient (shape, dtype): dw = flat @ U, accumulated in float32 for half."""
    dw = torch.matmul(flat.float(), U.float()) if flat.dtype in _HALF else torch.matmul(flat, U)
    return dw.view(shape).to(dtype)


class BilinearLinearFn(torch.autograd.Function):
    """y (N, out*d) from x (N, in*d), weight (out, in, d), bias (out, d) or None, with weight combinations
    wc (r, out, in) = U . weight in the compute dtype.  Internal temporaries come from the scratch pool.
    Twice differentiable: under create_graph the backward is itself recorded (see `_differentiable`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, wc, U, V, Wm):
        N = x.shape[0]
        r, d = V.shape
        out, inn = wc.shape[1], wc.shape[2]
        pool = ws.pooled(x.device)
        k = _row_split(r, N)
        wck = _repeat_terms(wc, k)
        xc = _pre(V, x.view(N * inn, d), pool).view(r, N, inn)                  # V-combos of activations
        m = ws.take(r * N * out, x.dtype, x.device).view(r, N, out) if pool else None
        xk = xc.view(r * k, N // k, inn)
        if pool:                                                                # r GEMMs (one bmm)
            torch.bmm(xk, wck.transpose(1, 2), out=m.view(r * k, N // k, out))
        else:
            m = torch.bmm(xk, wck.transpose(1, 2)).view(r, N, out)
        y = _post(m.view(r, N * out), Wm).view(N, out, d)                      # W map
        if pool:
            ws.give(m)
        if bias is not None:
            y.add_(bias.to(y.dtype))
        ctx.has_bias = bias is not None
        ctx.k = k
        _save(ctx, pool, x, weight, wck, U, V, Wm, xc)
        return y.view(N, out * d)

    @staticmethod
    def backward(ctx, g):
        x, weight, wck, U, V, Wm, xc = _saved(ctx)
        r, d = V.shape
        k = ctx.k
        N = x.shape[0]
        out, inn = wck.shape[1], wck.shape[2]
        pool = ctx.pooled
        if _differentiable(ctx):
            pool, xc = False, None
            if weight is not None:
                wck = _repeat_terms(weight_combinations(weight, U.to(weight.dtype), False).to(wck.dtype), k)
        g = g.contiguous().view(N * out, d)
        gc = _pre(Wm, g, pool).view(r, N, out)                                  # W-combos of the gradient
        gk = gc.view(r * k, N // k, out)
        dx = dw = db = None
        if ctx.needs_input_grad[1]:
            if xc is None:
                xc = _pre(V, x.view(N * inn, d), pool).view(r, N, inn)
            dwc = torch.bmm(gk.transpose(1, 2), xc.view(r * k, N // k, inn))     # (r*k, out, in)
            if k > 1:                                                          # partial sums over row blocks
                dwc = dwc.view(r, k, out, inn).sum(1)
            if pool:
                ws.give(xc)
                ctx.xc = None
            dw = _weight_grad(dwc.reshape(r, out * inn).t(), U, (out, inn, d), ctx.weight_dtype)
        if ctx.needs_input_grad[0]:
            # (r, N, in).  B as a transposed view of a (r*k, in, out) copy: BLAS runs this "NT" form markedly
            # faster than "NN" with B = wck (measured ~25% on MKL); the copy is weight-sized.
            wT = wck.transpose(1, 2).contiguous().transpose(1, 2)
            if pool:
                dxc = ws.take(r * N * inn, g.dtype, g.device).view(r, N, inn)
                torch.bmm(gk, wT, out=dxc.view(r * k, N // k, inn))
            else:
                dxc = torch.bmm(gk, wT).view(r, N, inn)
            dx = _post(dxc.view(r, N * inn), V).view(N, inn * d)
            if pool:
                ws.give(dxc)
        if pool:
            ws.give(gc)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.view(N, out, d).sum(0, dtype=torch.float32 if g.dtype in _HALF else None).to(ctx.weight_dtype)
        return dx, dw, db, None, None, None, None


# --------------------------------------------------------------------------------------------- conv
class BilinearConvFn(torch.autograd.Function):
    """y (N, C_out*d, *sp') from x (N, C_in*d, *sp); wc (r*C_out, C_in/groups, *k) = U . weight, stacked
    term-major so that the r convolutions are one convolution with r*groups groups.  Transposed: wc
    (r*C_in, C_out/groups, *k) and one transposed convolution with r*groups groups (and output_padding).
    Twice differentiable."""

    @staticmethod
    def forward(ctx, x, weight, bias, wc, U, V, Wm, stride, padding, dilation, groups, transposed=False,
                output_padding=None):
        N = x.shape[0]
        sp = x.shape[2:]
        r, d = V.shape
        cin = x.shape[1] // d
        S = math.prod(sp)
        pool = ws.pooled(x.device)
        nd = len(sp)
        cl = pool and nd in (2, 3)          # channels-last: oneDNN's grouped convolutions run faster on it
        if cl:
            xc = mix_in_cl(x.reshape(N, cin, d, S), V, sp)
        else:
            xc = mix_in(x.reshape(N, cin, d, S), V, pool).view(N, r * cin, *sp)
        opad = [0] * nd if output_padding is None else list(output_padding)
        m = torch.ops.aten.convolution(xc, wc, None, stride, padding, dilation, transposed, opad, groups * r)
        cout = m.shape[1] // r
        sp_out = m.shape[2:]
        So = math.prod(sp_out)
        if cl:
            y = mix_out_cl(m, Wm, cout)
        else:
            y = mix_out(m.view(N, r, cout, So), Wm, pool).view(N, cout * d, *sp_out)
        del m
        ctx.cl = cl
        if bias is not None:
            y = y.add_(bias.to(y.dtype).reshape(1, cout * d, *([1] * nd)))
        ctx.conv = (list(stride), list(padding), list(dilation), groups, transposed, opad)
        ctx.weight_shape = weight.shape
        ctx.has_bias = bias is not None
        _save(ctx, pool, x, weight, wc, U, V, Wm, xc)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, wc, U, V, Wm, xc = _saved(ctx)
        stride, padding, dilation, groups, transposed, opad = ctx.conv
        r, d = V.shape
        N = g.shape[0]
        cout = g.shape[1] // d
        sp_out = g.shape[2:]
        So = math.prod(sp_out)
        nd = len(sp_out)
        cin = x.shape[1] // d
        sp = x.shape[2:]
        S = math.prod(sp)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx = dw = db = None
        pool, cl = ctx.pooled, ctx.cl
        differentiable = _differentiable(ctx)
        if differentiable:
            pool = cl = False
            xc = mix_in(x.reshape(N, cin, d, S), V).view(N, r * cin, *sp)
            if weight is not None:
                wc = weight_combinations(weight, U.to(weight.dtype), True).to(wc.dtype)
        if need_x or need_w:
            if xc is None:
                if need_w and cl:
                    xc = mix_in_cl(x.reshape(N, cin, d, S), V, sp)
                elif need_w:
                    xc = mix_in(x.reshape(N, cin, d, S), V, pool).view(N, r * cin, *sp)
                else:                        # only its shape matters
                    xc = ws.take(N * r * cin * S, x.dtype, x.device)
                    xc = xc.view(N, *sp, r * cin).movedim(-1, 1) if cl else xc.view(N, r * cin, *sp)
            if cl:
                gc = mix_in_cl(g.contiguous().view(N, cout, d, So), Wm, sp_out)
            else:
                gc = mix_in(g.contiguous().view(N, cout, d, So), Wm, pool).view(N, r * cout, *sp_out)
            dxc, dwc, _ = torch.ops.aten.convolution_backward(
                gc, xc, wc, None, stride, padding, dilation, transposed, opad, groups * r, [need_x, need_w, False])
            if pool:
                ws.give(gc)
                ws.give(xc)
                ctx.xc = None
            if need_x and cl:
                dx = mix_out_cl(dxc, V, cin)
            elif need_x:
                dx = mix_out(dxc.reshape(N, r, cin, S), V, pool).reshape(x.shape)
            if need_w:
                dw = _weight_grad(dwc.reshape(r, -1).t(), U, ctx.weight_shape, ctx.weight_dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gs = g.reshape(N, cout, d, So)
            db = gs.sum((0, 3), dtype=torch.float32 if g.dtype in _HALF else None).to(ctx.weight_dtype)
        return dx, dw, db, None, None, None, None, None, None, None, None, None, None
