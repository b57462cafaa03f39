"""Fake shapes and autograd formulas shared by the dense (gemv) and block-sparse linear ops of runtime.kernels.cuda
(``algebranets_cuda::gemv`` / ``::bsr_linear``) and runtime.kernels.cpu (``algebranets_cpu::dense`` / ``::bsr``).

The ops take (algebra, weight, x, bias, *extra) and (algebra, crow, col, values, x, bias, *extra) with
weight (out, in, d), x (B, in, d), block-CSR crow (out+1,), col (nnz,), values (nnz, d) -> (B, out, d); the
trailing arguments (none for CUDA, the kernel variant for the CPU) get no gradient.  The gradients are the
exact einsums of runtime.kernels.reference, themselves differentiable (double backward works).
"""
from __future__ import annotations

from torch import Tensor

from . import reference
from .opkey import algebra_of


def gemv_fake(algebra: str, weight: Tensor, x: Tensor, bias, *extra) -> Tensor:
    return weight.new_empty((x.shape[0], weight.shape[0], weight.shape[2]))


def bsr_fake(algebra: str, crow: Tensor, col: Tensor, values: Tensor, x: Tensor, bias, *extra) -> Tensor:
    return values.new_empty((x.shape[0], crow.shape[0] - 1, values.shape[1]))


def gemv_setup(ctx, inputs, output):
    algebra, weight, x, bias = inputs[:4]
    ctx.algebra, ctx.has_bias, ctx.extra = algebra, bias is not None, len(inputs) - 4
    ctx.save_for_backward(weight, x)


def gemv_backward(ctx, grad):
    weight, x = ctx.saved_tensors
    gw, gx, gb = reference.gemv_grads(algebra_of(ctx.algebra), weight, x, grad, ctx.needs_input_grad[1],
                                      ctx.needs_input_grad[2], ctx.has_bias and ctx.needs_input_grad[3])
    return (None, gw, gx, gb) + (None,) * ctx.extra


def bsr_setup(ctx, inputs, output):
    algebra, crow, col, values, x, bias = inputs[:6]
    ctx.algebra, ctx.has_bias, ctx.extra = algebra, bias is not None, len(inputs) - 6
    ctx.save_for_backward(crow, col, values, x)


def bsr_backward(ctx, grad):
    crow, col, values, x = ctx.saved_tensors
    gv, gx, gb = reference.bsr_grads(algebra_of(ctx.algebra), crow, col, values, x, grad, ctx.needs_input_grad[3],
                                     ctx.needs_input_grad[4], ctx.has_bias and ctx.needs_input_grad[5])
    return (None, None, None, gv, gx, gb) + (None,) * ctx.extra
