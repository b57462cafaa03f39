"""Layers over a learned algebra (runtime.learned_algebra): the structure T is a live, trainable tensor, so nothing
derived from it is cached and both paths are plain torch ops with autograd through the weight and T.

    block      the weight expanded with T to the real (O*d, I*d) matrix (d^3 MACs per weight element), then
               torch's GEMM / conv: d^2 MACs per element pair.  The training path (few weights, many rows).
    transform  the INPUT combined with T once (d^3 MACs per input element): u[n, i, a, k] = sum_j T[a, j, k]
               x[n, i, j]; then the compact weight (O, I*d) times u: d^2 MACs per pair, reading the weight once
               (O*I*d values, d times fewer than the block weight).  The inference path (few rows); a linear
               layer on the CPU at inference runs it as one op, runtime.kernels.cpu.learned (learned.cpp).

`choose_path` picks the cheaper by the work on T: transform when fewer input elements enter than weight
elements exist (linear: rows < out_features).

    y = linear(x2, weight, bias, LA, path)              # x2 (N, I*d), weight (O, I, d) -> (N, O*d)
    y = conv(x, weight, bias, LA, geometry, path)       # x (N, I*d, *S) padded symmetric -> (N, O*d, *S')
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..kernels import choice
from .block import expand, real_forward
from .geometry import ConvGeometry

__all__ = ["choose_path", "linear", "linear_step", "conv", "resolve_path"]

# methods a learned layer accepts: auto / kernel choose (kernel: the transform path, which the CPU kernel runs);
# block; fold is block (a learned structure has no fold plan: m = 1)
_METHOD_PATH = {"auto": None, "kernel": "transform", "block": "block", "fold": "block"}


def resolve_path(method: str, name: str, who: str) -> str | None:
    """The path a requested method means for a learned algebra (None: choose by size); a ValueError for the
    methods that need a fixed algebra (bilinear: a verified scheme; complex: a complex-matrix structure)."""
    if method not in _METHOD_PATH:
        raise ValueError(f"{who}: method {method!r} needs a fixed algebra; the learned algebra {name} runs "
                         f"'auto', 'block' or 'kernel'")
    return _METHOD_PATH[method]


def choose_path(input_elements: int, weight_elements: int) -> str:
    """transform when T meets fewer input elements (rows x in) than weight elements, block otherwise."""
    return "transform" if input_elements < weight_elements else "block"


def _transform(x: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """x (N, I, d, P) -> u (N, d_k, I, d_a, P), u[n, k, i, a, p] = sum_j T[a, j, k] x[n, i, j, p]."""
    return torch.einsum("nijp,ajk->nkiap", x, T)


def linear_step(weight: torch.Tensor, bias: torch.Tensor | None, LA, path: str,
                use_kernel: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """weight (O, I, d), bias (O, d) | None -> a step (N, I*d) -> (N, O*d) on `path`; the block path expands
    the weight once for all steps (a recurrence's hidden projection).  use_kernel=False: the transform path in
    torch ops even where the CPU kernel applies (benchmarks)."""
    O, I, d = weight.shape
    T = LA.structure_tensor(weight.dtype, weight.device)
    b = None if bias is None else bias.reshape(-1)
    if path == "block":
        B = expand(weight, T.transpose(1, 2))
        return lambda x2: F.linear(x2, B, b)
    w2 = weight.reshape(O, I * d)

    def step(x2: torch.Tensor) -> torch.Tensor:
        kernel = choice.learned_kernel(weight, T, x2, bias) if use_kernel else None
        if kernel is not None:                  # inference on the CPU: one op, the weight streamed once
            return kernel(weight, T, x2, bias)
        N = x2.shape[0]
        u = _transform(x2.reshape(N, I, d, 1), T).reshape(N * d, I * d)      # rows (n, k), columns (i, a)
        y = F.linear(u, w2).view(N, d, O).transpose(1, 2).reshape(N, O * d)
        return y if b is None else y + b
    return step


def linear(x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, LA, path: str,
           use_kernel: bool = True) -> torch.Tensor:
    """x2 (N, I*d), weight (O, I, d), bias (O, d) | None -> (N, O*d)."""
    return linear_step(weight, bias, LA, path, use_kernel)(x2)


def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, LA, geometry: ConvGeometry,
         path: str) -> torch.Tensor:
    """x (N, C_in*d, *S) with symmetric zero padding in `geometry`; weight (O, I/g, *k, d) or transposed
    (I, O/g, *k, d) -> (N, C_out*d, *S')."""
    g = geometry
    d = weight.shape[-1]
    T = LA.structure_tensor(weight.dtype, weight.device)
    if path == "block":            # the block tensor is T transposed; a transposed conv's, transposed back
        return real_forward(x, expand(weight, T if g.transposed else T.transpose(1, 2)), bias, g)
    N, S = x.shape[0], x.shape[2:]
    I = x.shape[1] // d
    u = _transform(x.reshape(N, I, d, -1), T).reshape(N * d, I * d, *S)     # batch (n, k), channels (i, a)
    nd = g.nd
    taps, k = tuple(range(2, 2 + nd)), weight.shape[2:-1]
    if g.transposed:               # (I, O/g, *k, d) -> (I*d, O/g, *k): input channels (i, a)
        w = weight.permute(0, nd + 2, 1, *taps).reshape(weight.shape[0] * d, weight.shape[1], *k)
    else:                          # (O, I/g, *k, d) -> (O, I/g*d, *k)
        w = weight.permute(0, 1, nd + 2, *taps).reshape(weight.shape[0], weight.shape[1] * d, *k)
    y = real_forward(u, w, None, g)                                             # (N*d, C_out, *S')
    y = y.view(N, d, y.shape[1], *y.shape[2:]).transpose(1, 2).reshape(N, -1, *y.shape[2:])
    if bias is not None:
        y = y + bias.reshape(1, -1, *([1] * nd))
    return y
