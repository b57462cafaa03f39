"""Generated CUDA kernels for every algebra, compiled with NVRTC (through CuPy) and run on torch tensors.

    from runtime.kernels import cuda as ac
    ac.kernels_available(x)                       # CUDA tensor and a kernel backend (CuPy) present?
    y = ac.gemv("H", weight, x, bias)             # x (..., in*d), weight (out, in, d) -> (..., out*d)
    y = ac.bsr_linear("H", crow, col, values, x)  # element-sparse weight (block-CSR, one element per block)
    y = ac.bilinear_linear("H", weight, x, bias)  # premap kernel + r GEMMs (cuBLAS) + postmap kernel
    z = ac.mul("H", a, b)                         # elementwise product, (..., d)

Every function works on any device: CUDA tensors use the generated kernels when a backend is active
(CuPy installed, or ALGEBRANETS_CUDA_BACKEND=nvrtc), everything else runs the torch reference
implementation of the same op.  All of them are differentiable and `torch.compile`-able: they are
`torch.library` custom ops (`torch.ops.algebranets_cuda.*`, see `ops.py`).  docs/cuda.md has the details.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...registry import Algebra, load_algebra
from .. import reference
from ..opkey import key_of
from . import _backend, ops
from ._backend import BackendUnavailable, nvrtc_options
from ._launch import launches, warmup

__all__ = ["kernels_available", "backend_name", "backend_error", "mul", "premap", "postmap", "gemv",
           "bsr_linear", "bilinear_linear", "max_gemv_batch", "to_cupy", "from_cupy", "key_of", "ops",
           "reference", "nvrtc_options", "BackendUnavailable", "warmup", "launches"]


def kernels_available(tensor: Tensor | None = None) -> bool:
    """True when the generated kernels would run for `tensor`: it is a CUDA tensor and a backend is active.

    With tensor=None: whether a backend is active at all.  Never raises; without CuPy it is False.
    """
    if tensor is not None and not (isinstance(tensor, Tensor) and tensor.is_cuda):
        return False
    if torch.compiler.is_compiling():
        return _backend.active_cached()
    try:
        return _backend.get_backend() is not None and torch.cuda.is_available()
    except Exception:  # pragma: no cover - defensive: a broken CUDA install means "no kernels"
        return False


def backend_name() -> str | None:
    """"cupy", "nvrtc" or None."""
    be = _backend.get_backend()
    return None if be is None else be.name


def backend_error() -> str | None:
    """Why no kernel backend is active (None when one is)."""
    return _backend.backend_error()


def _alg(algebra: Algebra | str) -> Algebra:
    return load_algebra(algebra)


def mul(algebra: Algebra | str, x: Tensor, y: Tensor) -> Tensor:
    """Elementwise product x*y over the last dimension (size d), broadcasting the leading dimensions."""
    alg = _alg(algebra)
    if x.shape[-1:] != (alg.dim,) or y.shape[-1:] != (alg.dim,):
        raise ValueError(f"{alg.name}.mul: last dimensions must be {alg.dim}, got {tuple(x.shape)} and {tuple(y.shape)}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    shape = torch.broadcast_shapes(x.shape, y.shape)
    return ops.mul(key_of(alg), x.to(dtype).expand(shape), y.to(dtype).expand(shape))


def premap(algebra: Algebra | str, which: str, x: Tensor) -> Tensor:
    """Scheme pre-map: (..., d) -> (r, ...), out_s = sum_j P[s, j] x_j with P the scheme's U, V or W."""
    return ops.premap(key_of(algebra), which, x)


def postmap(algebra: Algebra | str, which: str, m: Tensor, bias: Tensor | None = None) -> Tensor:
    """Scheme post-map: (r, ...) -> (..., d), z_j = sum_s P[s, j] m_s (+ bias (nbias, d) on rows e % nbias)."""
    return ops.postmap(key_of(algebra), which, m, bias)


def _check_linear(alg: Algebra, weight: Tensor, x: Tensor, bias: Tensor | None, who: str):
    if weight.dim() != 3 or weight.shape[2] != alg.dim:
        raise ValueError(f"{who}: weight must be (out, in, {alg.dim}), got {tuple(weight.shape)}")
    out, inn, d = weight.shape
    if x.shape[-1] != inn * d:
        raise ValueError(f"{who}: x must be (..., {inn * d}) = (..., in*d), got {tuple(x.shape)}")
    if bias is not None and tuple(bias.shape) != (out, d):
        raise ValueError(f"{who}: bias must be ({out}, {d}), got {tuple(bias.shape)}")


def gemv(algebra: Algebra | str, weight: Tensor, x: Tensor, bias: Tensor | None = None) -> Tensor:
    """y_o = sum_i w_oi * x_i + b_o with compact weights, for small batches (the memory-bound case).

    weight (out, in, d), x (..., in*d) element-major, bias (out, d) -> (..., out*d).  Any batch works; the
    kernel reads the weights once per `max_gemv_batch(algebra)` batch rows.
    """
    alg = _alg(algebra)
    _check_linear(alg, weight, x, bias, "gemv")
    out, inn, d = weight.shape
    lead = x.shape[:-1]
    y = ops.gemv(key_of(alg), weight, x.reshape(-1, inn, d).to(weight.dtype), bias)
    return y.reshape(*lead, out * d)


def max_gemv_batch(algebra: Algebra | str) -> int:
    """The largest batch the gemv kernel serves with one pass over the weights."""
    from ._launch import table
    return table(_alg(algebra)).tiles[-1]


def bsr_linear(algebra: Algebra | str, crow: Tensor, col: Tensor, values: Tensor, x: Tensor,
               bias: Tensor | None = None) -> Tensor:
    """Element-sparse weight (block-CSR, one algebra element per block) times dense activations.

    crow (out+1,), col (nnz,) integer; values (nnz, d); x (..., in*d); bias (out, d) -> (..., out*d):
    y[b, o] = sum_{p in row o} values[p] * x[b, col[p]] + bias[o].
    """
    alg = _alg(algebra)
    d = alg.dim
    if values.dim() != 2 or values.shape[1] != d:
        raise ValueError(f"bsr_linear: values must be (nnz, {d}), got {tuple(values.shape)}")
    if crow.dim() != 1 or col.dim() != 1 or col.shape[0] != values.shape[0]:
        raise ValueError("bsr_linear: crow must be (out+1,), col (nnz,) with nnz = values.shape[0]")
    if x.shape[-1] % d:
        raise ValueError(f"bsr_linear: x's last dimension must be a multiple of {d}")
    out = crow.shape[0] - 1
    lead = x.shape[:-1]
    inn = x.shape[-1] // d
    y = ops.bsr_linear(key_of(alg), crow.to(torch.int64), col.to(torch.int64), values,
                       x.reshape(-1, inn, d).to(values.dtype), bias)
    return y.reshape(*lead, out * d)


def bilinear_linear(algebra: Algebra | str, weight: Tensor, x: Tensor, bias: Tensor | None = None, *,
                    weight_combinations: Tensor | None = None) -> Tensor:
    """The bilinear method with fused map passes: a = U-premap(weight) (r, out, in) (pass
    `weight_combinations` to reuse it), b = V-premap(x) (r, B, in), m = b @ a^T (r GEMMs), y = W-postmap(m) + bias.

    weight (out, in, d), x (..., in*d) -> (..., out*d).  Differentiable (the maps' adjoints are the maps).
    """
    alg = _alg(algebra)
    _check_linear(alg, weight, x, bias, "bilinear_linear")
    key = key_of(alg)
    out, inn, d = weight.shape
    lead = x.shape[:-1]
    a = weight_combinations if weight_combinations is not None else ops.premap(key, "U", weight)
    b = ops.premap(key, "V", x.reshape(-1, inn, d).to(weight.dtype))
    m = torch.bmm(b, a.transpose(1, 2))
    y = ops.postmap(key, "W", m, bias)
    return y.reshape(*lead, out * d)


def to_cupy(t: Tensor):
    """A CuPy array sharing `t`'s memory (DLPack, no copy).  Needs CuPy."""
    import cupy

    return cupy.from_dlpack(t)


def from_cupy(a) -> Tensor:
    """A torch tensor sharing a CuPy array's memory (DLPack, no copy)."""
    return torch.from_dlpack(a)
