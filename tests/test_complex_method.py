"""The complex method (runtime.methods.complex): torch's complex GEMM / conv on complex views of the activations.

Oracles: torch's own complex modules (nn.Linear / nn.Conv2d / nn.ConvTranspose2d in complex128 with the same
weights) for C, 2 x 2 complex matrix products written with torch complex tensors for M2C, and the float64
block path for both.  Which algebras qualify is decided exactly from the (fold) block; the others are refused
with a ValueError naming the algebra.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import runtime.functional as AF
from runtime import counting, load_algebra, methods
from runtime.layers import AlgebraConv2d, AlgebraLinear
from runtime.methods import complex as cx

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grads(y: torch.Tensor, inputs, seed: torch.Tensor) -> tuple:
    return (y, *torch.autograd.grad((y * seed).sum(), inputs))


# ------------------------------------------------------------------------------------------ which algebras
def test_which_algebras_are_complex():
    plans = {name: cx.complex_plan(load_algebra(name)) for name in
             ("R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C")}
    assert {n for n, p in plans.items() if p is not None} == {"C", "M2C"}
    c, m2c = plans["C"], plans["M2C"]
    assert (c.m, c.q, c.plan) == (1, 1, None)
    assert (m2c.m, m2c.q) == (2, 2) and m2c.plan is not None        # two complex columns of a 2 x 2 matrix
    assert load_algebra("C").cache.complex_plan is c                 # kept on the algebra
    for name in ("H", "M2R", "Dual"):
        with pytest.raises(ValueError, match=f"method='complex' does not apply to algebra {name}"):
            AF.algebra_linear(torch.randn(2, 3 * load_algebra(name).dim), torch.randn(4, 3, load_algebra(name).dim),
                              None, name, method="complex")
    # auto, counting and width matching leave it out where it does not apply
    big = dict(rows=2048, in_elems=512, out_elems=512)
    assert "complex" in AF.method_costs("C", **big) and "complex" in AF.method_costs("M2C", **big)
    assert "complex" not in AF.method_costs("H", **big)


def test_half_precision_is_refused():
    w = torch.randn(4, 3, 2, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float32 .*float64"):
        AF.algebra_linear(torch.randn(5, 6, dtype=torch.bfloat16), w, None, "C", method="complex")


# ----------------------------------------------------------------------------------------- C vs torch
def test_c_linear_equals_torch_complex_linear():
    """Forward and every gradient equal nn.Linear(complex128) with the same weights (real gradients are the
    (re, im) pairs of torch's complex gradients)."""
    g = _gen(1)
    N, I, O = 7, 5, 3
    x = torch.randn(N, I * 2, generator=g, dtype=F64, requires_grad=True)
    layer = AlgebraLinear(I, O, "C", method="complex").to(F64)
    ref = torch.nn.Linear(I, O, dtype=torch.complex128)
    with torch.no_grad():
        ref.weight.copy_(torch.view_as_complex(layer.weight.detach()))
        ref.bias.copy_(torch.view_as_complex(layer.bias.detach()))
    xc = torch.view_as_complex(x.detach().view(N, I, 2)).clone().requires_grad_()
    seed = torch.randn(N, O * 2, generator=g, dtype=F64)
    y = layer(x)
    yc = ref(xc)
    torch.testing.assert_close(y, torch.view_as_real(yc).reshape(N, O * 2))
    (y * seed).sum().backward()
    (torch.view_as_real(yc).reshape(N, O * 2) * seed).sum().backward()
    torch.testing.assert_close(x.grad, torch.view_as_real(xc.grad).reshape(N, I * 2))
    torch.testing.assert_close(layer.weight.grad, torch.view_as_real(ref.weight.grad))
    torch.testing.assert_close(layer.bias.grad, torch.view_as_real(ref.bias.grad))


def _to_complex_channels(t: torch.Tensor) -> torch.Tensor:
    """(N, C*2, *S) real, element-major -> (N, C, *S) complex."""
    return torch.view_as_complex(t.reshape(t.shape[0], -1, 2, *t.shape[2:]).movedim(2, -1).contiguous())


def _to_real_channels(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t).movedim(-1, 2).reshape(t.shape[0], -1, *t.shape[2:])


@pytest.mark.parametrize("transposed", [False, True])
def test_c_conv_equals_torch_complex_conv(transposed):
    g = _gen(2 + transposed)
    cin, cout, groups = 4, 6, 2
    x = torch.randn(2, cin * 2, 6, 5, generator=g, dtype=F64, requires_grad=True)
    if transposed:
        w = torch.randn(cin, cout // groups, 3, 2, 2, generator=g, dtype=F64, requires_grad=True)
        kw = dict(stride=2, padding=1, output_padding=1, groups=groups, dilation=1)
        ours, theirs = AF.algebra_conv_transpose2d, F.conv_transpose2d
    else:
        w = torch.randn(cout, cin // groups, 3, 2, 2, generator=g, dtype=F64, requires_grad=True)
        kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=groups)
        ours, theirs = AF.algebra_conv2d, F.conv2d
    b = torch.randn(cout, 2, generator=g, dtype=F64, requires_grad=True)
    y = ours(x, w, b, "C", method="complex", **kw)
    xc = _to_complex_channels(x.detach()).requires_grad_()
    wc = torch.view_as_complex(w.detach()).clone().requires_grad_()
    bc = torch.view_as_complex(b.detach()).clone().requires_grad_()
    yc = theirs(xc, wc, bc, **kw)
    torch.testing.assert_close(y, _to_real_channels(yc))
    seed = torch.randn(y.shape, generator=g, dtype=F64)
    dx, dw, db = torch.autograd.grad((y * seed).sum(), (x, w, b))
    dxc, dwc, dbc = torch.autograd.grad((_to_real_channels(yc) * seed).sum(), (xc, wc, bc))
    torch.testing.assert_close(dx, _to_real_channels(dxc))
    torch.testing.assert_close(dw, torch.view_as_real(dwc))
    torch.testing.assert_close(db, torch.view_as_real(dbc))


# --------------------------------------------------------------------------------------- M2C vs torch
def _m2c_oracle(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """y_o = sum_i W_oi X_i + B_o with 2 x 2 complex matrices in torch complex arithmetic; components
    (Re z11, Im z11, Re z12, Im z12, Re z21, Im z21, Re z22, Im z22)."""
    N, I, O = x.shape[0], w.shape[1], w.shape[0]
    X = torch.view_as_complex(x.reshape(N, I, 2, 2, 2))
    W = torch.view_as_complex(w.reshape(O, I, 2, 2, 2))
    B = torch.view_as_complex(b.reshape(O, 2, 2, 2))
    Y = torch.einsum("oiab,nibc->noac", W, X) + B
    return torch.view_as_real(Y).reshape(N, O * 8)


def test_m2c_linear_equals_complex_matrix_products_and_block():
    g = _gen(4)
    N, I, O = 5, 3, 4
    x = torch.randn(N, I * 8, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(O, I, 8, generator=g, dtype=F64, requires_grad=True)
    b = torch.randn(O, 8, generator=g, dtype=F64, requires_grad=True)
    seed = torch.randn(N, O * 8, generator=g, dtype=F64)
    got = _grads(AF.algebra_linear(x, w, b, "M2C", method="complex"), (x, w, b), seed)
    want = _grads(_m2c_oracle(x, w, b), (x, w, b), seed)
    block = _grads(AF.algebra_linear(x, w, b, "M2C", method="block"), (x, w, b), seed)
    for a, o, bl in zip(got, want, block):
        torch.testing.assert_close(a, o)
        torch.testing.assert_close(a, bl)


@pytest.mark.parametrize("name", ["C", "M2C"])
def test_conv_and_transposed_conv_equal_block(name):
    """Forward and gradients of conv1d / conv2d / conv_transpose2d (strides, groups, dilation) equal the block
    path; float32 too (within float32 rounding)."""
    d = load_algebra(name).dim
    g = _gen(5)
    x = torch.randn(2, 4 * d, 7, 6, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, d, generator=g, dtype=F64, requires_grad=True)
    wt = torch.randn(4, 3, 2, 3, d, generator=g, dtype=F64, requires_grad=True)
    b = torch.randn(6, d, generator=g, dtype=F64, requires_grad=True)
    x1 = torch.randn(3, 4 * d, 9, generator=g, dtype=F64, requires_grad=True)
    w1 = torch.randn(6, 4, 3, d, generator=g, dtype=F64, requires_grad=True)
    calls = {
        "conv2d": (lambda m: AF.algebra_conv2d(x, w, b, name, stride=(1, 2), padding=(1, 0), dilation=(2, 1),
                                               groups=2, method=m), (x, w, b)),
        "conv1d": (lambda m: AF.algebra_conv1d(x1, w1, None, name, padding=2, method=m), (x1, w1)),
        "conv_transpose2d": (lambda m: AF.algebra_conv_transpose2d(x, wt, b, name, stride=2, padding=1,
                                                                   output_padding=1, groups=2, method=m), (x, wt, b)),
    }
    for what, (call, inputs) in calls.items():
        y = call("block")
        seed = torch.randn(y.shape, generator=g, dtype=F64)
        want = _grads(y, inputs, seed)
        got = _grads(call("complex"), inputs, seed)
        for a, e in zip(got, want):
            torch.testing.assert_close(a, e, msg=lambda m: f"{name} {what}: {m}")
    layer = AlgebraConv2d(4, 6, 3, name, padding=1, method="complex")
    ref = AlgebraConv2d(4, 6, 3, name, padding=1, method="block")
    ref.load_state_dict(layer.state_dict())
    x32 = x.detach().float()
    torch.testing.assert_close(layer(x32), ref(x32), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------- second order
@pytest.mark.parametrize("name", ["C", "M2C"])
def test_gradcheck_and_gradgradcheck(name):
    d = load_algebra(name).dim
    g = _gen(6)
    x = torch.randn(3, 2 * d, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(2, 2, d, generator=g, dtype=F64, requires_grad=True)
    b = torch.randn(2, d, generator=g, dtype=F64, requires_grad=True)
    lin = lambda x, w, b: AF.algebra_linear(x, w, b, name, method="complex")       # noqa: E731
    assert gradcheck(lin, (x, w, b)) and gradgradcheck(lin, (x, w, b))
    xc = torch.randn(1, 2 * d, 4, 3, generator=g, dtype=F64, requires_grad=True)
    wc = torch.randn(2, 2, 2, 2, d, generator=g, dtype=F64, requires_grad=True)
    conv = lambda x, w, b: AF.algebra_conv2d(x, w, b, name, padding=1, method="complex")   # noqa: E731
    convt = lambda x, w, b: AF.algebra_conv_transpose2d(x, w, b, name, stride=2, method="complex")  # noqa: E731
    for f in (conv, convt):
        assert gradcheck(f, (xc, wc, b)) and gradgradcheck(f, (xc, wc, b))


# -------------------------------------------------------------------------------- inference and auto
def test_inference_cache_follows_weight_changes():
    layer = AlgebraLinear(3, 4, "M2C", method="complex")
    ref = AlgebraLinear(3, 4, "M2C", method="block")
    x = torch.randn(5, 24)
    with torch.no_grad():
        ref.load_state_dict(layer.state_dict())
        torch.testing.assert_close(layer(x), ref(x), atol=1e-5, rtol=1e-5)
        layer.weight.mul_(-2.0)
        ref.weight.mul_(-2.0)
        torch.testing.assert_close(layer(x), ref(x), atol=1e-5, rtol=1e-5)


def test_counting_reports_complex_macs():
    """4 real MACs per complex product: C 4 per element pair, M2C m q^2 4 = 2 * 4 * 4 = 32; none for H."""
    for name, per_pair in (("C", 4), ("M2C", 32)):
        d = load_algebra(name).dim
        rep = counting.count(AlgebraLinear(6, 5, name), torch.randn(3, 6 * d))
        assert rep.layers[0].macs["complex"] == 3 * 6 * 5 * per_pair
        assert methods.macs_per_pair(load_algebra(name), "complex") == per_pair
    model = torch.nn.Sequential(AlgebraLinear(2, 2, "C"), torch.nn.Flatten(), )
    rep_h = counting.count(torch.nn.Sequential(AlgebraLinear(3, 3, "H")), torch.randn(2, 12))
    assert "complex" not in rep_h.layers[0].macs
    with pytest.raises(ValueError, match="does not apply to algebra H"):
        rep_h.total_macs("complex")
    assert "MACs complex" in rep_h.table()
    assert counting.count(model, torch.randn(1, 4)).total_macs("complex") == 4 * 4


# ---------------------------------------------------------------------------------- a basis-changed fold
@pytest.fixture(scope="module")
def clifford_build(tmp_path_factory) -> Path:
    """Cl(3,0) (= M2(C)) and Cl(2,0) (= M2(R)) from a user spec, built into a temporary folder."""
    from codegen.build import build

    root = tmp_path_factory.mktemp("clifford")
    specs = root / "specs"
    specs.mkdir()
    (specs / "cl.py").write_text("from codegen.spec import clifford\n"
                                 "Cl30 = clifford(3, 0, name='Cl30')\nCl20 = clifford(2, 0, name='Cl20')\n")
    build(specs, root / "out")
    return root / "out"


def test_basis_changed_fold_runs_as_complex(clifford_build):
    """Cl(3,0) folds through a basis change; the complex method finds its imaginary unit inside the block and
    runs linear, conv and transposed conv as complex GEMMs / convs: equal to the elementwise product (the
    generated naive `mul`) and the block path, forward and gradients, and twice differentiable."""
    A = load_algebra("Cl30", path=clifford_build)
    assert A.fold.m == 2 and A.fold.change_in is not None
    cp = cx.complex_plan(A)
    assert cp is not None and (cp.m, cp.q) == (2, 2) and cp.change_in is not None
    d = A.dim
    g = _gen(8)
    x = torch.randn(5, 3 * d, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(4, 3, d, generator=g, dtype=F64, requires_grad=True)
    b = torch.randn(4, d, generator=g, dtype=F64, requires_grad=True)
    seed = torch.randn(5, 4 * d, generator=g, dtype=F64)
    oracle = (A.mul(w.unsqueeze(0), x.view(5, 1, 3, d)).sum(2) + b).reshape(5, 4 * d)
    got = _grads(AF.algebra_linear(x, w, b, A, method="complex"), (x, w, b), seed)
    for a, e in zip(got, _grads(oracle, (x, w, b), seed)):
        torch.testing.assert_close(a, e)
    xc = torch.randn(2, 3 * d, 5, 4, generator=g, dtype=F64, requires_grad=True)
    wc = torch.randn(4, 3, 3, 2, d, generator=g, dtype=F64, requires_grad=True)
    wt = torch.randn(3, 4, 3, 2, d, generator=g, dtype=F64, requires_grad=True)
    for call, inputs in (
            (lambda m: AF.algebra_conv2d(xc, wc, b, A, padding=1, method=m), (xc, wc, b)),
            (lambda m: AF.algebra_conv_transpose2d(xc, wt, b, A, stride=2, padding=1, method=m), (xc, wt, b))):
        y = call("block")
        s = torch.randn(y.shape, generator=g, dtype=F64)
        for a, e in zip(_grads(call("complex"), inputs, s), _grads(y, inputs, s)):
            torch.testing.assert_close(a, e)
    x2, w2, b2 = (t.detach().requires_grad_() for t in (x[:2, :d], w[:2, :1], b[:2]))
    assert gradgradcheck(lambda x, w, b: AF.algebra_linear(x, w, b, A, method="complex"), (x2, w2, b2))
    # counting: 32 MACs per pair plus the change, d^2 per activation element in and out (as fold)
    lc = counting.count(AlgebraLinear(3, 4, A), torch.randn(5, 3 * d)).layers[0]
    assert lc.macs["complex"] == 5 * 3 * 4 * 32 + (5 * 3 + 5 * 4) * d * d == lc.macs["fold"]


def test_split_algebras_are_refused_clearly(clifford_build):
    """Cl(2,0) = M2(R) also folds through a change, but nothing in its block squares to -1: refused by name."""
    A = load_algebra("Cl20", path=clifford_build)
    assert A.fold.m == 2 and A.fold.change_in is not None
    assert not methods.applies(A, "complex")
    with pytest.raises(ValueError, match="does not apply to algebra Cl20"):
        AF.algebra_linear(torch.randn(2, 8), torch.randn(3, 2, 4), None, A, method="complex")


def test_auto_leaves_half_precision_and_autocast_to_the_real_paths():
    """auto picks the complex method for a small C layer in float32, but never where it would refuse (bfloat16
    weights) or change the output dtype (autocast)."""
    small = dict(rows=64, in_elems=64, out_elems=64)
    assert AF.choose_method("C", **small) == "complex"
    assert AF.choose_method("C", complex_ok=False, **small) != "complex"
    layer = AlgebraLinear(64, 64, "C")
    x = torch.randn(64, 128)
    y16 = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert y16.dtype == torch.bfloat16
    layer.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
