"""Reference implementations of the CUDA kernels in plain torch (any device; the CPU path of the ops).

Shapes follow the kernels (d = algebra.dim, r = algebra.rank, weight = left factor):

    mul(x, y)                     (..., d) x (..., d)                   -> (..., d)
    mul_backward(x, y, g)         gradients of mul                       -> ((..., d), (..., d))
    premap(P, x)                  (..., d)                               -> (r, ...)   o_s = sum_j P[s,j] x_j
    postmap(P, m, bias)           (r, ...), bias (nbias, d) or None      -> (..., d)   z_j = sum_s P[s,j] m_s
    gemv(w, x, bias)              w (out, in, d), x (B, in, d)           -> (B, out, d)
    bsr_linear(crow, col, values, x, bias)
                                  block-CSR (one element per block), x (B, in, d) -> (B, out, d)
    gemv_grads, bsr_grads         their gradients, in differentiable torch ops (so double backward works)

Half-precision inputs are computed in float32 and rounded once at the end, like the kernels.
"""
from __future__ import annotations

import torch

from ..registry import Algebra


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _T(alg: Algebra, dtype: torch.dtype, device) -> torch.Tensor:
    return alg.structure_tensor(compute_dtype(dtype), device)


def structure(alg: Algebra, dtype: torch.dtype, device) -> torch.Tensor:
    """The structure tensor in `dtype`: a fresh constant while tracing (fake tensors, torch.compile), so that
    no traced tensor lands in the algebra's cache; the cached one otherwise."""
    if torch.compiler.is_compiling() or torch._guards.detect_fake_mode() is not None:
        return torch.tensor(alg.structure.tolist(), dtype=dtype, device=device)
    return alg.structure_tensor(dtype, device)


def scheme_matrix(alg: Algebra, which: str, dtype: torch.dtype, device) -> torch.Tensor:
    if which not in ("U", "V", "W"):
        raise ValueError(f"scheme map must be 'U', 'V' or 'W', got {which!r}")
    return alg.constant(which, dtype, device)


def mul(alg: Algebra, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    c = compute_dtype(x.dtype)
    return torch.einsum("ijk,...i,...j->...k", _T(alg, x.dtype, x.device), x.to(c), y.to(c)).to(x.dtype)


def mul_backward(alg: Algebra, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor):
    c = compute_dtype(x.dtype)
    T = _T(alg, x.dtype, x.device)
    gx = torch.einsum("ijk,...j,...k->...i", T, y.to(c), g.to(c)).to(x.dtype)
    gy = torch.einsum("ijk,...i,...k->...j", T, x.to(c), g.to(c)).to(y.dtype)
    return gx, gy


def premap(alg: Algebra, which: str, x: torch.Tensor) -> torch.Tensor:
    c = compute_dtype(x.dtype)
    P = scheme_matrix(alg, which, c, x.device)
    return torch.einsum("sj,...j->s...", P, x.to(c)).to(x.dtype)


def postmap(alg: Algebra, which: str, m: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    c = compute_dtype(m.dtype)
    P = scheme_matrix(alg, which, c, m.device)
    z = torch.einsum("sj,s...->...j", P, m.to(c))
    if bias is not None:
        flat = z.reshape(-1, bias.shape[0], alg.dim) + bias.to(c)
        z = flat.reshape(z.shape)
    return z.to(m.dtype)


def gemv(alg: Algebra, w: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    c = compute_dtype(w.dtype)
    out, inn, d = w.shape
    L = alg.left_matrix(w.to(c))                       # (out, in, d[k], d[j])
    big = L.permute(0, 2, 1, 3).reshape(out * d, inn * d)
    y = (x.to(c).reshape(x.shape[0], inn * d) @ big.T).reshape(x.shape[0], out, d)
    if bias is not None:
        y = y + bias.to(c)
    return y.to(w.dtype)


def bsr_rows(crow: torch.Tensor) -> torch.Tensor:
    """Row index of every stored element, from the compressed row pointer."""
    counts = crow[1:] - crow[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts)


def bsr_linear(alg: Algebra, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, x: torch.Tensor,
               bias: torch.Tensor | None) -> torch.Tensor:
    c = compute_dtype(values.dtype)
    out = crow.numel() - 1
    rows = bsr_rows(crow)
    xg = x.to(c)[:, col]                                          # (B, nnz, d)
    prod = torch.einsum("ijk,pi,bpj->bpk", _T(alg, values.dtype, x.device), values.to(c), xg)
    y = torch.zeros(x.shape[0], out, alg.dim, dtype=c, device=x.device)
    y.index_add_(1, rows, prod)
    if bias is not None:
        y = y + bias.to(c)
    return y.to(values.dtype)


def gemv_grads(alg: Algebra, w: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, need_w: bool, need_x: bool,
               need_b: bool):
    """(grad w, grad x, grad bias) of y = gemv(w, x, bias) given grad (B, out, d); None where not needed."""
    c = compute_dtype(w.dtype)
    T = structure(alg, c, w.device)
    G = torch.einsum("pjk,bok->bopj", T, grad.to(c))                 # (B, out, d, d)
    gx = torch.einsum("oip,bopj->bij", w.to(c), G).to(x.dtype) if need_x else None
    gw = torch.einsum("bij,bopj->oip", x.to(c), G).to(w.dtype) if need_w else None
    gb = grad.to(c).sum(0).to(grad.dtype) if need_b else None
    return gw, gx, gb


def bsr_grads(alg: Algebra, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, x: torch.Tensor,
              grad: torch.Tensor, need_values: bool, need_x: bool, need_b: bool):
    """(grad values, grad x, grad bias) of y = bsr_linear(crow, col, values, x, bias) given grad (B, out, d)."""
    c = compute_dtype(values.dtype)
    T = structure(alg, c, values.device)
    g = grad.to(c)[:, bsr_rows(crow)]                               # (B, nnz, d)
    gv = gx = None
    if need_values:
        gv = torch.einsum("ijk,bpj,bpk->pi", T, x.to(c)[:, col], g).to(values.dtype)
    if need_x:
        contrib = torch.einsum("ijk,pi,bpk->bpj", T, values.to(c), g)
        gx = torch.zeros(x.shape, dtype=c, device=x.device).index_add_(1, col, contrib).to(x.dtype)
    gb = grad.to(c).sum(0).to(grad.dtype) if need_b else None
    return gv, gx, gb
