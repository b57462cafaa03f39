"""Second derivatives (create_graph=True) are exact for every built-in algebra, method and layer.

gradgradcheck compares the analytical second derivatives with finite differences of the backward (float64,
small sizes; fast mode for convolutions).  The reported gradient-penalty case is checked against
an oracle: the same layer written as a real matrix of left-multiplication blocks built from the independent
product oracles in tests/oracles.py, differentiated by autograd.
"""
from __future__ import annotations

import pytest
import torch

from runtime.functional import (algebra_conv1d, algebra_conv2d, algebra_conv3d, algebra_conv_transpose2d,
                                algebra_linear)
from runtime.layers import AlgebraBatchNorm2d, AlgebraConv2d, AlgebraLinear
from tests.oracles import DIMS, oracle_tensor

pytestmark = pytest.mark.usefixtures("one_thread")

ALGEBRAS = sorted(DIMS)
METHODS = ("block", "fold", "bilinear")
CONVS = {1: algebra_conv1d, 2: algebra_conv2d, 3: algebra_conv3d}
F64 = dict(dtype=torch.float64)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ALGEBRAS)
def test_gradgradcheck_linear(name, method):
    torch.manual_seed(0)
    d = DIMS[name]
    x, w, b = torch.randn(3, 2 * d, **F64), torch.randn(2, 2, d, **F64), torch.randn(2, d, **F64)
    inputs = tuple(t.requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradgradcheck(lambda x, w, b: algebra_linear(x, w, b, name, method), inputs)


@pytest.mark.parametrize("nd", sorted(CONVS))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ALGEBRAS)
def test_gradgradcheck_conv(name, method, nd):
    torch.manual_seed(nd)
    d = DIMS[name]
    groups = 2 if nd == 2 else 1
    x = torch.randn(2, 2 * d, *([3] * nd), **F64)
    w = torch.randn(2, 2 // groups, *([2] * nd), d, **F64)
    b = torch.randn(2, d, **F64)
    inputs = tuple(t.requires_grad_() for t in (x, w, b))
    conv = CONVS[nd]

    def f(x, w, b):
        return conv(x, w, b, name, stride=1 if nd != 3 else 2, padding=1, groups=groups, method=method)

    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ("C", "H", "M2R", "M2C"))
def test_gradgradcheck_conv_transpose(name, method):
    torch.manual_seed(1)
    d = DIMS[name]
    x = torch.randn(2, 2 * d, 3, 3, **F64)
    w = torch.randn(2, 2, 2, 2, d, **F64)           # (C_in, C_out // groups, *k, d)
    b = torch.randn(2, d, **F64)
    inputs = tuple(t.requires_grad_() for t in (x, w, b))

    def f(x, w, b):
        return algebra_conv_transpose2d(x, w, b, name, stride=2, padding=1, output_padding=1, method=method)

    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)


def _oracle_linear(x, w, b, name):
    """y = x @ L(w)^T + b with L(w)[o*d+k, i*d+j] = sum_a T[a,j,k] w[o,i,a], T from the product oracle."""
    T = torch.as_tensor(oracle_tensor(name).astype(float), dtype=w.dtype)
    O, I, d = w.shape
    L = torch.einsum("oia,ajk->okij", w, T).reshape(O * d, I * d)
    return x @ L.t() + b.reshape(-1)


@pytest.mark.parametrize("method", ("bilinear", "fold", "block", "auto"))
@pytest.mark.parametrize("name", ("H", "M2C", "M3R"))
def test_gradient_penalty_matches_oracle(name, method):
    """Regression (a reported failure): (gx,) = grad(lin(tanh(x)).sum(), x, create_graph=True); gx.pow(2).sum().backward()
    left lin.weight.grad None on the bilinear path (once_differentiable dropped the weight's term) and raised on
    fold with m > 1."""
    torch.manual_seed(0)
    d = DIMS[name]
    lin = AlgebraLinear(5, 4, algebra=name, method=method).double()
    x = torch.randn(6, 5 * d, **F64, requires_grad=True)
    (gx,) = torch.autograd.grad(lin(torch.tanh(x)).sum(), x, create_graph=True)
    gx.pow(2).sum().backward()

    w = lin.weight.detach().clone().requires_grad_()
    b = lin.bias.detach().clone().requires_grad_()
    xo = x.detach().clone().requires_grad_()
    (go,) = torch.autograd.grad(_oracle_linear(torch.tanh(xo), w, b, name).sum(), xo, create_graph=True)
    go.pow(2).sum().backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    torch.testing.assert_close(lin.weight.grad, w.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x.grad, xo.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ("bilinear", "fold"))
def test_hessian_vector_product_conv_matches_block(method):
    """A Hessian-vector product through a conv layer: the same as on the block reference path."""
    torch.manual_seed(1)
    conv = AlgebraConv2d(2, 3, 3, padding=1, algebra="M2R", method=method).double()
    x = torch.randn(2, 8, 5, 5, **F64)
    v = torch.randn_like(conv.weight)

    def hvp(m):
        conv.method = m
        loss = torch.tanh(conv(x)).pow(2).sum()
        (g,) = torch.autograd.grad(loss, conv.weight, create_graph=True)
        (h,) = torch.autograd.grad((g * v).sum(), conv.weight)
        return h

    torch.testing.assert_close(hvp(method), hvp("block"), rtol=1e-10, atol=1e-10)


def test_whitening_norm_second_derivatives():
    """AlgebraBatchNorm(mode='whitening') differentiates through an inverse matrix square root with a custom
    backward; that backward is itself differentiable."""
    torch.manual_seed(0)
    bn = AlgebraBatchNorm2d(2, algebra="H", mode="whitening").double()
    x = torch.randn(4, 8, 3, 3, **F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w: bn(x), (x, bn.weight), fast_mode=True)


@pytest.mark.parametrize("name,method", [("H", "bilinear"), ("M2R", "fold"), ("M2C", "bilinear")])
def test_recurrent_gradient_penalty_matches_block(name, method):
    """A gradient penalty through an LSTM (input projection and per-step hidden projection) gives the same
    parameter gradients on the fast paths as on the block path, which is plain autograd."""
    from runtime.layers import AlgebraLSTM

    torch.manual_seed(0)
    d = DIMS[name]
    x0 = torch.randn(4, 2, 3 * d, **F64)
    grads = {}
    for m in ("block", method):
        torch.manual_seed(1)
        lstm = AlgebraLSTM(3, 2, algebra=name, method=m).double()
        x = x0.clone().requires_grad_()
        (gx,) = torch.autograd.grad(lstm(x)[0].sum(), x, create_graph=True)
        gx.pow(2).sum().backward()
        grads[m] = [p.grad.clone() for p in lstm.parameters()]
    for got, want in zip(grads[method], grads["block"]):
        torch.testing.assert_close(got, want)
