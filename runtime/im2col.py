"""Whole-element im2col for convolutions run as matrix products (the element-sparse layers of runtime.sparsity
and the dense CPU kernels of runtime.kernels.cpu).

    X, out_shape = element_columns(x, d, kernel_size, stride, dilation)   # x already padded
    y = from_rows(Y, N, out_shape)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def element_columns(x: torch.Tensor, d: int, kernel_size: Sequence[int], stride: Sequence[int],
                    dilation: Sequence[int]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """x (N, C*d, *S) (padding applied) -> (X (N*L, C*K, d), out spatial shape): row n*L + l holds the input
    elements under output position l of image n, column c*K + t the element of channel c at kernel tap t."""
    nd = len(kernel_size)
    N = x.shape[0]
    xs = x.unflatten(1, (x.shape[1] // d, d))                   # (N, C, d, *S)
    for i, (k, s, dl) in enumerate(zip(kernel_size, stride, dilation)):
        xs = xs.unfold(3 + i, dl * (k - 1) + 1, s)              # window appended last
        if dl > 1:
            xs = xs[..., ::dl]
    out_sp = tuple(xs.shape[3:3 + nd])                          # (N, C, d, *O, *k) -> (N, *O, C, *k, d)
    perm = [0] + list(range(3, 3 + nd)) + [1] + list(range(3 + nd, 3 + 2 * nd)) + [2]
    cols = xs.shape[1] * math.prod(kernel_size)                 # explicit: N may be 0
    return xs.permute(perm).reshape(N * math.prod(out_sp), cols, d), out_sp


def from_rows(y: torch.Tensor, N: int, out_sp: tuple[int, ...]) -> torch.Tensor:
    """(N*L, O, d) rows back to the channel layout (N, O*d, *out_sp)."""
    nd = len(out_sp)
    O, d = y.shape[1], y.shape[2]
    y = y.reshape((N,) + tuple(out_sp) + (O, d)).permute([0, nd + 1, nd + 2] + list(range(1, nd + 1)))
    return y.reshape((N, O * d) + tuple(out_sp))
