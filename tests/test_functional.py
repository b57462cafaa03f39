"""runtime.functional: every algebra x method x op against independent oracles, gradients, method choice.

Oracles: einsum over the structure tensor in float64 (convolution via explicit patch extraction, not
torch's conv), and torch complex ops for C.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

import runtime.functional as AF
from runtime import AlgebraNotBuiltError, load_algebra
from runtime import methods
from runtime.methods import workspace as _workspace
from codegen.exact import zeros
from codegen.exact.fold import fold_plan
from runtime.registry import AlgebraCache, FoldPlan
from runtime.registry import SchemeData

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O", "RandH", "RandM4R"]
METHODS = ["block", "fold", "bilinear", "auto"]
CONV = {1: AF.algebra_conv1d, 2: AF.algebra_conv2d, 3: AF.algebra_conv3d}
FAST = settings(max_examples=4, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# Tiny tensors: one intra-op thread is faster, and on a loaded machine each parallel region of the float64
# slow convolution path (one per group) can wait for a time slice.
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ oracles
def oracle_linear(x, w, b, A):
    T = torch.as_tensor(A.structure, dtype=torch.float64)
    d = A.dim
    xv = x.double().reshape(*x.shape[:-1], -1, d)
    y = torch.einsum("abk,oia,...ib->...ok", T, w.double(), xv)
    if b is not None:
        y = y + b.double()
    return y.reshape(*x.shape[:-1], -1)


def oracle_conv(x, w, b, A, stride, padding, dilation, groups):
    """Patches by explicit unfolding, then the structure-tensor einsum per group (no torch conv)."""
    T = torch.as_tensor(A.structure, dtype=torch.float64)
    d = A.dim
    nd = w.dim() - 3
    x, w = x.double(), w.double()
    N, cin = x.shape[0], x.shape[1] // d
    xp = F.pad(x, [p for p in reversed(padding) for _ in (0, 1)])
    k = w.shape[2:-1]
    u = xp.reshape(N, cin, d, *xp.shape[2:])
    for i in range(nd):
        span = dilation[i] * (k[i] - 1) + 1
        u = u.unfold(3 + i, span, stride[i])[..., ::dilation[i]]
    # u: (N, cin, d, *out, *k)
    cout = w.shape[0]
    cg, og = cin // groups, cout // groups
    out_l, k_l = "pqr"[:nd], "xyz"[:nd]
    ys = []
    for g in range(groups):
        ys.append(torch.einsum(f"abk,oi{k_l}a,nib{out_l}{k_l}->nok{out_l}", T, w[g * og:(g + 1) * og],
                               u[:, g * cg:(g + 1) * cg]))
    y = torch.cat(ys, 1)
    if b is not None:
        y = y + b.double().reshape(1, cout, d, *[1] * nd)
    return y.reshape(N, cout * d, *y.shape[3:])


def close(a, b, scale=1.0):
    tol = 1e-10 * max(1.0, scale)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.is_complex() or b.is_complex():
        a, b = torch.view_as_real(a.to(torch.complex128)), torch.view_as_real(b.to(torch.complex128))
    err = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    assert err <= tol, f"max abs error {err} > {tol}"


# ------------------------------------------------------------------------------------------- linear
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ALGEBRAS)
@FAST
@given(batch=st.sampled_from([(1,), (3,), (2, 3), ()]), inn=st.integers(1, 5), out=st.integers(1, 5),
       bias=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_linear_matches_oracle(name, method, batch, inn, out, bias, seed):
    A = load_algebra(name)
    d = A.dim
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, inn * d, generator=g, dtype=torch.float64)
    w = torch.randn(out, inn, d, generator=g, dtype=torch.float64)
    b = torch.randn(out, d, generator=g, dtype=torch.float64) if bias else None
    y = AF.algebra_linear(x, w, b, name, method=method)
    close(y, oracle_linear(x, w, b, A), scale=inn)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ALGEBRAS)
def test_linear_float32_and_large(name, method):
    """float32 and a size where `auto` may pick another method than at toy sizes."""
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(0)
    x = torch.randn(33, 24 * d)
    w = torch.randn(17, 24, d) / 5
    b = torch.randn(17, d)
    y = AF.algebra_linear(x, w, b, A, method=method)
    ref = oracle_linear(x, w, b, A)
    assert y.dtype == torch.float32
    assert torch.allclose(y.double(), ref, atol=2e-4 * math.sqrt(24 * d), rtol=1e-4)


# --------------------------------------------------------------------------------------------- conv
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("name", ALGEBRAS)
@FAST
@given(data=st.data())
def test_conv_matches_oracle(name, nd, method, data):
    A = load_algebra(name)
    d = A.dim
    groups = data.draw(st.sampled_from([1, 2, 3]))
    cin = groups * data.draw(st.integers(1, 2))
    cout = groups * data.draw(st.integers(1, 2))
    N = data.draw(st.integers(1, 2))
    k = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    dil = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    pad = tuple(data.draw(st.integers(0, 2)) for _ in range(nd))
    size = tuple(dl * (kk - 1) + 1 + data.draw(st.integers(0, 3 if nd < 3 else 2)) for kk, dl in zip(k, dil))
    bias = data.draw(st.booleans())
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2 ** 16)))
    x = torch.randn(N, cin * d, *size, generator=g, dtype=torch.float64)
    w = torch.randn(cout, cin // groups, *k, d, generator=g, dtype=torch.float64)
    b = torch.randn(cout, d, generator=g, dtype=torch.float64) if bias else None
    y = CONV[nd](x, w, b, name, stride, pad, dil, groups, method)
    close(y, oracle_conv(x, w, b, A, stride, pad, dil, groups), scale=math.prod(k) * cin)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["H", "M2R", "C"])
def test_conv_unbatched_same_and_padding_modes(name, method):
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(1)
    w = torch.randn(3, 2, 4, 3, d, dtype=torch.float64)
    b = torch.randn(3, d, dtype=torch.float64)
    x = torch.randn(2 * d, 7, 6, dtype=torch.float64)
    y = AF.algebra_conv2d(x, w, b, A, padding="same", method=method)
    assert y.shape == (3 * d, 7, 6)
    # 'same' with an even kernel pads (1, 2) on the first axis and (1, 1) on the second, as torch does
    xp = F.pad(x.unsqueeze(0), [1, 1, 1, 2])
    close(y.unsqueeze(0), oracle_conv(xp, w, b, A, (1, 1), (0, 0), (1, 1), 1), scale=24)
    for mode in ("reflect", "replicate", "circular"):
        y = AF.algebra_conv2d(x.unsqueeze(0), w, b, A, padding=(1, 2), method=method, padding_mode=mode)
        xp = F.pad(x.unsqueeze(0), [2, 2, 1, 1], mode=mode)
        close(y, oracle_conv(xp, w, b, A, (1, 1), (0, 0), (1, 1), 1), scale=24)
    y = AF.algebra_conv2d(x.unsqueeze(0), w, b, A, padding="valid", method=method)
    close(y, oracle_conv(x.unsqueeze(0), w, b, A, (1, 1), (0, 0), (1, 1), 1), scale=24)


# ------------------------------------------------------------------------------------- C vs complex
def _to_complex(t, C):
    """(N, C*2, *sp) real element-major -> (N, C, *sp) complex."""
    N, sp = t.shape[0], t.shape[2:]
    v = t.reshape(N, C, 2, *sp).movedim(2, -1).contiguous()
    return torch.view_as_complex(v)


@pytest.mark.parametrize("method", METHODS)
def test_complex_matches_torch_complex(method):
    torch.manual_seed(2)
    x = torch.randn(5, 7 * 2, dtype=torch.float64)
    w = torch.randn(3, 7, 2, dtype=torch.float64)
    b = torch.randn(3, 2, dtype=torch.float64)
    ref = torch.view_as_complex(x.view(5, 7, 2)) @ torch.view_as_complex(w).T + torch.view_as_complex(b)
    y = AF.algebra_linear(x, w, b, "C", method=method)
    close(y, torch.view_as_real(ref).reshape(5, 6), scale=7)
    for nd in (1, 2, 3):
        sp = (6, 5, 4)[:nd]
        xx = torch.randn(2, 4 * 2, *sp, dtype=torch.float64)
        ww = torch.randn(6, 2, *([3] * nd), 2, dtype=torch.float64)
        conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        ref = conv(_to_complex(xx, 4), torch.view_as_complex(ww), torch.view_as_complex(b.repeat(2, 1)),
                   stride=1, padding=1, groups=2)
        y = CONV[nd](xx, ww, b.repeat(2, 1), "C", 1, 1, 1, 2, method)
        close(_to_complex(y, 6), ref, scale=30)


# --------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("method", ["block", "fold", "bilinear"])
@pytest.mark.parametrize("name", ALGEBRAS)
def test_gradcheck_linear(name, method):
    d = load_algebra(name).dim
    torch.manual_seed(3)
    inn = 2 if d <= 4 else 1
    x = torch.randn(2, inn * d, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, inn, d, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, d, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, w, b: AF.algebra_linear(x, w, b, name, method=method), (x, w, b))


@pytest.mark.parametrize("method", ["block", "fold", "bilinear"])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("name", ALGEBRAS)
def test_gradcheck_conv(name, nd, method):
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(4)
    sp = (5, 4, 3)[:nd]
    # float64 convolutions take torch's slow path, one call per group: keep r * groups small for large r
    groups = 2 if A.rank <= 8 else 1
    x = torch.randn(2, 2 * d, *sp, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2 // groups, *([2] * nd), d, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, d, dtype=torch.float64, requires_grad=True)
    stride = (2,) + (1,) * (nd - 1)
    fn = lambda x, w, b: CONV[nd](x, w, b, name, stride, 1, 1, groups, method)  # noqa: E731
    assert gradcheck(fn, (x, w, b), fast_mode=True)


@pytest.mark.parametrize("method", ["block", "fold", "bilinear"])
@pytest.mark.parametrize("name", ["H", "M2R", "M2C"])
def test_gradients_match_oracle_and_retain_graph(name, method):
    """Analytic gradients equal the oracle's autograd gradients; a second backward (retain_graph) on the
    pooled paths gives the same gradients again."""
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(5)
    for kind in ("linear", "conv"):
        if kind == "linear":
            x = torch.randn(6, 3 * d, dtype=torch.float64, requires_grad=True)
            w = torch.randn(4, 3, d, dtype=torch.float64, requires_grad=True)
            f = lambda x, w, b: AF.algebra_linear(x, w, b, A, method=method)  # noqa: E731
            o = lambda x, w, b: oracle_linear(x, w, b, A)  # noqa: E731
        else:
            x = torch.randn(2, 3 * d, 5, 4, dtype=torch.float64, requires_grad=True)
            w = torch.randn(4, 3, 2, 3, d, dtype=torch.float64, requires_grad=True)
            f = lambda x, w, b: AF.algebra_conv2d(x, w, b, A, 1, 1, method=method)  # noqa: E731
            o = lambda x, w, b: oracle_conv(x, w, b, A, (1, 1), (1, 1), (1, 1), 1)  # noqa: E731
        b = torch.randn(4, d, dtype=torch.float64, requires_grad=True)
        y = f(x, w, b)
        g = torch.randn_like(y)
        grads = torch.autograd.grad(y, (x, w, b), g, retain_graph=True)
        ref = torch.autograd.grad(o(x, w, b), (x, w, b), g)
        for a, r in zip(grads, ref):
            close(a, r, scale=50)
        # another call in between reuses the scratch pool; the retained graph must not see it
        f(x.detach() * 2, w.detach(), b.detach())
        again = torch.autograd.grad(y, (x, w, b), g)
        for a, r in zip(again, ref):
            close(a, r, scale=50)


def test_frozen_weight_and_input_only_gradients():
    A = load_algebra("H")
    for method in ("block", "fold", "bilinear"):
        x = torch.randn(3, 2 * 4, 5, dtype=torch.float64, requires_grad=True)
        w = torch.randn(2, 2, 3, 4, dtype=torch.float64)
        (gx,) = torch.autograd.grad(AF.algebra_conv1d(x, w, None, A, method=method).sum(), (x,))
        (rx,) = torch.autograd.grad(oracle_conv(x, w, None, A, (1,), (0,), (1,), 1).sum(), (x,))
        close(gx, rx, scale=10)
        xl = torch.randn(3, 8, dtype=torch.float64)
        wl = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
        (gw,) = torch.autograd.grad(AF.algebra_linear(xl, wl, None, A, method=method).sum(), (wl,))
        (rw,) = torch.autograd.grad(oracle_linear(xl, wl, None, A).sum(), (wl,))
        close(gw, rw, scale=10)


# ----------------------------------------------------------------------------------- fold detection
def _exact_structure(A) -> np.ndarray:
    T = zeros(A.dim, A.dim, A.dim)
    for i, j, k, v in A.structure_exact:
        T[i, j, k] = Fraction(v)
    return T


def _permuted(A, q, name):
    """The same algebra in a permuted basis (new basis vector i = old basis vector q[i]), with the fold plan
    the build would store for it (found exactly, then read back as the runtime reads a manifest)."""
    T = A.structure[np.ix_(q, q, q)]
    s = A.scheme
    scheme = SchemeData(U=s.U[:, q], V=s.V[:, q], W=s.W[:, q], provenance="permuted", additions=s.additions,
                        unusual_coefficients=s.unusual_coefficients)
    fold = FoldPlan.from_json(fold_plan(_exact_structure(A)[np.ix_(q, q, q)]).to_json(), T, float)
    return dataclasses.replace(A, name=name, structure=T, scheme=scheme, fold=fold, cache=AlgebraCache())


def test_fold_detection_from_structure():
    expect = {"R": 1, "C": 1, "H": 1, "Dual": 1, "Cross3": 1, "M2R": 2, "M3R": 3, "M4R": 4, "M2C": 2, "O": 1}
    for name, m in expect.items():
        plan = AF.fold_info(name)
        assert plan.m == m, name
        assert plan.m * plan.p == load_algebra(name).dim
        # the plan is exact: B(w) applied to every block of a permuted element is w * x
        A = load_algebra(name)
        rng = np.random.default_rng(0)
        w, x = rng.standard_normal((2, A.dim))
        z = np.einsum("ijk,i,j->k", A.structure, w, x)
        B = np.einsum("ats,a->ts", plan.block, w)
        xp = x[list(plan.perm)].reshape(plan.m, plan.p)
        assert np.allclose((xp @ B.T).ravel(), z[list(plan.perm)])


@pytest.mark.parametrize("name", ["M2R", "M3R", "M2C"])
def test_fold_is_detected_in_a_permuted_basis(name):
    """No names: the same algebra with a shuffled basis is still folded (by a gather), and every method
    still matches the oracle."""
    A = load_algebra(name)
    q = np.random.default_rng(7).permutation(A.dim)
    P = _permuted(A, q, name + "perm")
    assert P.fold.m == A.fold.m > 1
    torch.manual_seed(0)
    x = torch.randn(3, 4 * A.dim, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, A.dim, dtype=torch.float64)
    b = torch.randn(5, A.dim, dtype=torch.float64)
    for method in ("block", "fold", "bilinear"):
        close(AF.algebra_linear(x, w, b, P, method=method), oracle_linear(x, w, b, P), scale=16)
        xc = torch.randn(2, 2 * A.dim, 5, 5, dtype=torch.float64)
        wc = torch.randn(3, 2, 3, 3, A.dim, dtype=torch.float64)
        close(AF.algebra_conv2d(xc, wc, b[:3], P, 1, 1, method=method),
              oracle_conv(xc, wc, b[:3], P, (1, 1), (1, 1), (1, 1), 1), scale=50)
    assert gradcheck(lambda x: AF.algebra_linear(x, w, b, P, method="fold"), (x,))


def test_non_identical_blocks_do_not_fold():
    """R x R x R x R-like tensors (block diagonal but blocks fed by different components) give m = 1."""
    T = zeros(2, 2, 2)
    T[0, 0, 0] = Fraction(1)   # e0 e0 = e0
    T[1, 1, 1] = Fraction(1)   # e1 e1 = e1  (R x R: two 1x1 blocks, but L(x) = diag(x0, x1) differs per block)
    assert fold_plan(T).m == 1


# ---------------------------------------------------------------------------------- method choice
def test_method_resolution_and_overrides(monkeypatch):
    calls = []
    real_get = methods.get
    monkeypatch.setattr(methods, "get", lambda name: calls.append(name) or real_get(name))
    x = torch.randn(2, 16)
    w = torch.randn(3, 4, 4)
    assert AF.get_default_method() == "auto"
    AF.algebra_linear(x, w, None, "M2R", method="bilinear")
    assert calls[-1] == "bilinear"
    with AF.default_method("fold"):
        assert AF.get_default_method() == "fold"
        AF.algebra_linear(x, w, None, "M2R")
        assert calls[-1] == "fold"
        AF.algebra_linear(x, w, None, "M2R", method="block")          # explicit wins over the default
        assert calls[-1] == "block"
        with AF.force_method("bilinear"):                            # forced wins over explicit
            AF.algebra_linear(x, w, None, "M2R", method="block")
            assert calls[-1] == "bilinear"
    assert AF.get_default_method() == "auto"
    AF.set_default_method("block")
    try:
        AF.algebra_linear(x, w, None, "M2R")
        assert calls[-1] == "block"
    finally:
        AF.set_default_method("auto")
    with pytest.raises(ValueError, match="unknown method 'fast'.*'auto'"):
        AF.algebra_linear(x, w, None, "M2R", method="fast")
    with pytest.raises(ValueError, match="unknown method"):
        AF.set_default_method("gemm")


def test_auto_cost_model_choices():
    big = dict(rows=2048, in_elems=512, out_elems=512)
    assert AF.choose_method("H", **big) == "bilinear"
    assert AF.choose_method("M4R", **big) in ("fold", "bilinear")
    assert AF.choose_method("M2R", **big) in ("fold", "bilinear")
    assert AF.choose_method("R", **big) == "block"
    # tiny layers: one GEMM beats r of them
    assert AF.choose_method("H", rows=1, in_elems=2, out_elems=2) == "block"
    costs = AF.method_costs("M4R", **big)
    assert costs["block"] > 3 * min(costs["fold"], costs["bilinear"])
    for name in ALGEBRAS:
        c = AF.method_costs(name, **big)
        complex_ = {"complex"} if name in ("C", "M2C") else set()      # only where the blocks are complex matrices
        assert set(c) == {"block", "fold", "bilinear"} | complex_ and all(v > 0 for v in c.values())


# ------------------------------------------------------------------------------------ weight cache
@pytest.mark.parametrize("method", ["bilinear", "fold", "block"])
def test_weight_cache_invalidation(method):
    A = load_algebra("H" if method != "fold" else "M2R")
    d = A.dim
    lin = torch.nn.Parameter(torch.randn(4, 3, d))
    x = torch.randn(5, 3 * d)
    ref = lambda: oracle_linear(x, lin.detach(), None, A)  # noqa: E731
    with torch.no_grad():
        y1 = AF.algebra_linear(x, lin, None, A, method=method)
        assert torch.allclose(y1.double(), ref(), atol=1e-4)
        lin.mul_(-2.0)                                             # in-place update under no_grad
        y2 = AF.algebra_linear(x, lin, None, A, method=method)
        assert torch.allclose(y2.double(), ref(), atol=1e-4)
    opt = torch.optim.SGD([lin], lr=0.5)
    AF.algebra_linear(x, lin, None, A, method=method).square().sum().backward()
    opt.step()                                                     # optimizer step
    with torch.no_grad():
        assert torch.allclose(AF.algebra_linear(x, lin, None, A, method=method).double(), ref(), atol=1e-3)
    m = torch.nn.Module()
    m.weight = lin
    m.load_state_dict({"weight": torch.randn(4, 3, d)})            # load_state_dict copies in place
    with torch.no_grad():
        assert torch.allclose(AF.algebra_linear(x, lin, None, A, method=method).double(), ref(), atol=1e-4)
    lin.data = torch.randn(4, 3, d)                                 # new storage
    with torch.no_grad():
        assert torch.allclose(AF.algebra_linear(x, lin, None, A, method=method).double(), ref(), atol=1e-4)


def test_weight_cache_hits_when_unchanged(monkeypatch):
    from runtime.methods import bilinear, weight_cache
    made = []
    real = weight_cache.cached_weight

    def spy(weight, key, make):
        return real(weight, key, lambda: made.append(key) or make())
    monkeypatch.setattr(bilinear, "cached_weight", spy)
    w = torch.randn(4, 3, 4)
    x = torch.randn(5, 12)
    with torch.no_grad():
        for _ in range(3):
            AF.algebra_linear(x, w, None, "H", method="bilinear")
    assert len(made) == 1
    # while training (grad enabled, weight requires grad) nothing is cached
    wp = torch.nn.Parameter(w.clone())
    for _ in range(2):
        AF.algebra_linear(x, wp, None, "H", method="bilinear")
    assert len(made) == 1


def test_scratch_pool_does_not_change_results():
    torch.manual_seed(0)
    x = torch.randn(8, 6 * 16, requires_grad=True)
    w = torch.randn(5, 6, 16, requires_grad=True)
    outs = []
    for limit in (1 << 30, 0):
        _workspace.set_workspace_limit(limit)
        try:
            res = []
            for method in ("fold", "bilinear"):
                y = AF.algebra_linear(x, w, None, "M4R", method=method)
                res += [y.detach()] + list(torch.autograd.grad(y.square().sum(), (x, w)))
            outs.append(res)
        finally:
            _workspace.set_workspace_limit(1 << 30)
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    assert _workspace.workspace_bytes() >= 0


# ----------------------------------------------------------------------------------------- errors
def test_functional_errors():
    x = torch.randn(2, 12)
    w = torch.randn(3, 3, 4)
    with pytest.raises(ValueError, match=r"algebra_linear\(H\).*13 features.*not a multiple.*d=4"):
        AF.algebra_linear(torch.randn(2, 13), w, None, "H")
    with pytest.raises(ValueError, match=r"expected 12 input features \(3 elements x d=4\), got 16 \(4 elements\)"):
        AF.algebra_linear(torch.randn(2, 16), w, None, "H")
    with pytest.raises(ValueError, match=r"weight must have shape \(out_features, in_features, d=4\)"):
        AF.algebra_linear(x, torch.randn(3, 3, 2), None, "H")
    with pytest.raises(ValueError, match=r"bias must have shape \(out_features, d\) = \(3, 4\)"):
        AF.algebra_linear(x, w, torch.randn(3, 2), "H")
    with pytest.raises(TypeError, match=r"input dtype torch.float64 does not match weight dtype torch.float32"):
        AF.algebra_linear(x.double(), w, None, "H")
    with pytest.raises(RuntimeError, match=r"input is on cpu but the weight is on meta"):
        AF.algebra_linear(x, w.to("meta"), None, "H")
    with pytest.raises(AlgebraNotBuiltError, match=r"algebra_linear: algebra 'Octonion' is not built.*codegen build"):
        AF.algebra_linear(x, w, None, "Octonion")
    with pytest.raises(TypeError, match="pass algebra="):
        AF.algebra_linear(x, w, None)
    with pytest.raises(ValueError, match=r"algebra_conv2d\(H\): input has 10 channels.*not a multiple of"):
        AF.algebra_conv2d(torch.randn(1, 10, 5, 5), torch.randn(2, 3, 3, 3, 4), None, "H")
    with pytest.raises(ValueError, match=r"expected 12 input channels \(3 elements x d=4\), got 8"):
        AF.algebra_conv2d(torch.randn(1, 8, 5, 5), torch.randn(2, 3, 3, 3, 4), None, "H")
    with pytest.raises(ValueError, match="too small for kernel"):
        AF.algebra_conv2d(torch.randn(1, 12, 2, 2), torch.randn(2, 3, 3, 3, 4), None, "H")
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        AF.algebra_conv1d(torch.randn(1, 12, 5), torch.randn(2, 3, 3, 4), None, "H", stride=2, padding="same")


@pytest.mark.parametrize("method", ["block", "fold", "bilinear"])
@pytest.mark.parametrize("name", ["H", "M2R"])
def test_empty_batch(name, method):
    d = load_algebra(name).dim
    w = torch.randn(3, 2, d, requires_grad=True)
    b = torch.randn(3, d, requires_grad=True)
    y = AF.algebra_linear(torch.randn(0, 2 * d, requires_grad=True), w, b, name, method=method)
    y.sum().backward()
    assert y.shape == (0, 3 * d) and torch.all(w.grad == 0) and torch.all(b.grad == 0)
    wc = torch.randn(3, 2, 3, 3, d, requires_grad=True)
    y = AF.algebra_conv2d(torch.randn(0, 2 * d, 5, 5, requires_grad=True), wc, b, name, padding=1, method=method)
    y.sum().backward()
    assert y.shape == (0, 3 * d, 5, 5)


@pytest.mark.parametrize("name", ["C", "Cross3", "M2R"])
def test_bilinear_row_blocks_for_thread_balance(name):
    """With r not a multiple of the thread count the r GEMMs are cut into row blocks (one bmm keeps every
    thread busy); results and gradients are unchanged."""
    from runtime.methods.bilinear_fn import _row_split
    A = load_algebra(name)
    d = A.dim
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _row_split(A.rank, 256) == 2
        torch.manual_seed(9)
        x = torch.randn(256, 3 * d, dtype=torch.float64, requires_grad=True)
        w = torch.randn(5, 3, d, dtype=torch.float64, requires_grad=True)
        b = torch.randn(5, d, dtype=torch.float64, requires_grad=True)
        y = AF.algebra_linear(x, w, b, A, method="bilinear")
        ref = oracle_linear(x, w, b, A)
        close(y, ref, scale=10)
        g = torch.randn_like(y)
        for a, r in zip(torch.autograd.grad(y, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g)):
            close(a, r, scale=300)
    finally:
        torch.set_num_threads(old)
