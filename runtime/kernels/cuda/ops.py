"""The kernels as `torch.library` custom ops: ``torch.ops.algebranets_cuda.<op>``.

Every op has a device-agnostic reference implementation in torch (`reference.py`; it is what runs on the
CPU, and on CUDA when no kernel backend is active or the dtype has no kernel), a CUDA implementation that
launches the generated kernel, a fake (meta) implementation for `torch.compile`, and an autograd formula.
The algebra is passed as a string key (`key_of(algebra)`), so graphs and `opcheck` see plain arguments.

    mul(algebra, x, y) -> z                                  x, y: (..., d), same shape and dtype
    mul_backward(algebra, x, y, grad) -> (gx, gy)
    premap(algebra, which, x) -> (r, ...)                    which in "U", "V", "W"
    postmap(algebra, which, m, bias?) -> (..., d)            m: (r, ...); bias (nbias, d) added to rows e % nbias
    gemv(algebra, weight, x, bias?) -> (B, out, d)           weight (out, in, d), x (B, in, d), bias (out, d)
    bsr_linear(algebra, crow, col, values, x, bias?) -> (B, out, d)
                                                             block-CSR: crow (out+1,), col (nnz,) int64,
                                                             values (nnz, d); x (B, in, d)
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ...registry import Algebra
from .. import linear_ops as lin
from .. import reference
from ..opkey import algebra_of, key_of
from . import _backend, _launch

NS = "algebranets_cuda"


def prep(t: Tensor) -> Tensor:
    """Contiguous and 16-byte aligned (what the kernels' vector loads need)."""
    t = t.contiguous()
    if t.data_ptr() % 16:
        t = t.clone()
    return t


def use_kernel(alg: Algebra, kind: str, *tensors: Optional[Tensor]) -> bool:
    """True when the CUDA kernel can run on these tensors (backend active, same CUDA device and dtype)."""
    ts = [t for t in tensors if t is not None]
    first = ts[0]
    if not first.is_cuda or _backend.get_backend() is None:
        return False
    if any(t.device != first.device or t.dtype != first.dtype for t in ts):
        return False
    try:
        return _launch.supports(alg, kind, first.dtype)
    except FileNotFoundError:
        return False


# -------------------------------------------------------------------------------------------- mul
@torch.library.custom_op(f"{NS}::mul", mutates_args=())
def mul(algebra: str, x: Tensor, y: Tensor) -> Tensor:
    return reference.mul(algebra_of(algebra), x, y)


@mul.register_kernel("cuda")
def _mul_cuda(algebra: str, x: Tensor, y: Tensor) -> Tensor:
    alg = algebra_of(algebra)
    if use_kernel(alg, "mul", x, y):
        return _launch.mul_fwd(alg, prep(x), prep(y))
    return reference.mul(alg, x, y)


@mul.register_fake
def _mul_fake(algebra: str, x: Tensor, y: Tensor) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op(f"{NS}::mul_backward", mutates_args=())
def mul_backward(algebra: str, x: Tensor, y: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    return reference.mul_backward(algebra_of(algebra), x, y, grad)


@mul_backward.register_kernel("cuda")
def _mul_backward_cuda(algebra: str, x: Tensor, y: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    alg = algebra_of(algebra)
    if use_kernel(alg, "mul", x, y, grad):
        return _launch.mul_bwd(alg, prep(x), prep(y), prep(grad))
    return reference.mul_backward(alg, x, y, grad)


@mul_backward.register_fake
def _mul_backward_fake(algebra: str, x: Tensor, y: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(y, memory_format=torch.contiguous_format))


def _mul_setup(ctx, inputs, output):
    algebra, x, y = inputs
    ctx.algebra = algebra
    ctx.save_for_backward(x, y)


def _mul_grad(ctx, grad):
    x, y = ctx.saved_tensors
    gx, gy = mul_backward(ctx.algebra, x, y, grad)
    return None, gx, gy


def _mul_backward_setup(ctx, inputs, output):
    algebra, x, y, grad = inputs
    ctx.algebra = algebra
    ctx.save_for_backward(x, y, grad)


def _mul_backward_grad(ctx, ggx, ggy):
    """Double backward: gx = L(y, g), gy = R(x, g) are bilinear, so their gradients are products again."""
    x, y, g = ctx.saved_tensors
    ggx = torch.zeros_like(x) if ggx is None else ggx
    ggy = torch.zeros_like(y) if ggy is None else ggy
    dx = mul_backward(ctx.algebra, x, ggy, g)[0]
    dy = mul_backward(ctx.algebra, ggx, y, g)[1]
    dg = mul(ctx.algebra, ggx, y) + mul(ctx.algebra, x, ggy)
    return None, dx, dy, dg


mul.register_autograd(_mul_grad, setup_context=_mul_setup)
mul_backward.register_autograd(_mul_backward_grad, setup_context=_mul_backward_setup)


# ------------------------------------------------------------------------------------ scheme maps
def _check_which(which: str) -> None:
    if which not in ("U", "V", "W"):
        raise ValueError(f"scheme map must be 'U', 'V' or 'W', got {which!r}")


@torch.library.custom_op(f"{NS}::premap", mutates_args=())
def premap(algebra: str, which: str, x: Tensor) -> Tensor:
    _check_which(which)
    return reference.premap(algebra_of(algebra), which, x)


@premap.register_kernel("cuda")
def _premap_cuda(algebra: str, which: str, x: Tensor) -> Tensor:
    _check_which(which)
    alg = algebra_of(algebra)
    if use_kernel(alg, "map", x):
        return _launch.premap(alg, which, prep(x))
    return reference.premap(alg, which, x)


@premap.register_fake
def _premap_fake(algebra: str, which: str, x: Tensor) -> Tensor:
    return x.new_empty((algebra_of(algebra).rank,) + tuple(x.shape[:-1]))


@torch.library.custom_op(f"{NS}::postmap", mutates_args=())
def postmap(algebra: str, which: str, m: Tensor, bias: Optional[Tensor]) -> Tensor:
    _check_which(which)
    return reference.postmap(algebra_of(algebra), which, m, bias)


@postmap.register_kernel("cuda")
def _postmap_cuda(algebra: str, which: str, m: Tensor, bias: Optional[Tensor]) -> Tensor:
    _check_which(which)
    alg = algebra_of(algebra)
    if use_kernel(alg, "map", m, bias):
        return _launch.postmap(alg, which, prep(m), None if bias is None else prep(bias))
    return reference.postmap(alg, which, m, bias)


@postmap.register_fake
def _postmap_fake(algebra: str, which: str, m: Tensor, bias: Optional[Tensor]) -> Tensor:
    return m.new_empty(tuple(m.shape[1:]) + (algebra_of(algebra).dim,))


def _premap_setup(ctx, inputs, output):
    ctx.algebra, ctx.which, _ = inputs


def _premap_grad(ctx, grad):
    return None, None, postmap(ctx.algebra, ctx.which, grad, None)


def _postmap_setup(ctx, inputs, output):
    ctx.algebra, ctx.which, _, bias = inputs
    ctx.nbias = None if bias is None else bias.shape[0]


def _postmap_grad(ctx, grad):
    gm = premap(ctx.algebra, ctx.which, grad)
    gb = None
    if ctx.nbias is not None:
        d = grad.shape[-1]
        gb = grad.reshape(-1, ctx.nbias, d).sum(0)
    return None, None, gm, gb


premap.register_autograd(_premap_grad, setup_context=_premap_setup)
postmap.register_autograd(_postmap_grad, setup_context=_postmap_setup)


# ------------------------------------------------------------------------------------------- gemv
@torch.library.custom_op(f"{NS}::gemv", mutates_args=())
def gemv(algebra: str, weight: Tensor, x: Tensor, bias: Optional[Tensor]) -> Tensor:
    return reference.gemv(algebra_of(algebra), weight, x, bias)


@gemv.register_kernel("cuda")
def _gemv_cuda(algebra: str, weight: Tensor, x: Tensor, bias: Optional[Tensor]) -> Tensor:
    alg = algebra_of(algebra)
    if use_kernel(alg, "gemv", weight, x, bias):
        return _launch.gemv(alg, prep(weight), prep(x), None if bias is None else prep(bias))
    return reference.gemv(alg, weight, x, bias)


gemv.register_fake(lin.gemv_fake)
gemv.register_autograd(lin.gemv_backward, setup_context=lin.gemv_setup)


# ------------------------------------------------------------------------------------ block sparse
@torch.library.custom_op(f"{NS}::bsr_linear", mutates_args=())
def bsr_linear(algebra: str, crow: Tensor, col: Tensor, values: Tensor, x: Tensor, bias: Optional[Tensor]) -> Tensor:
    return reference.bsr_linear(algebra_of(algebra), crow, col, values, x, bias)


@bsr_linear.register_kernel("cuda")
def _bsr_cuda(algebra: str, crow: Tensor, col: Tensor, values: Tensor, x: Tensor, bias: Optional[Tensor]) -> Tensor:
    alg = algebra_of(algebra)
    if use_kernel(alg, "bsr", values, x, bias) and crow.is_cuda and col.is_cuda:
        return _launch.bsr(alg, prep(crow.to(torch.int64)), prep(col.to(torch.int64)), prep(values), prep(x),
                           None if bias is None else prep(bias))
    return reference.bsr_linear(alg, crow, col, values, x, bias)


bsr_linear.register_fake(lin.bsr_fake)
bsr_linear.register_autograd(lin.bsr_backward, setup_context=lin.bsr_setup)
