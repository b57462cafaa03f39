"""The kernels' torch.library ops on the CPU: opcheck (schema, fake, autograd registration, AOT dispatch),
the reference implementations against the algebra's product, gradients, torch.compile, the public API's
checks, and the clean fallback when no kernel backend (CuPy) is available.
"""
from __future__ import annotations

import sys

import pytest
import torch

from runtime.kernels import cuda as ac
from runtime import load_algebra
from runtime.kernels.cuda import _backend, ops, reference

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O", "RandH", "RandM4R"]


def _r(*shape, gen, grad=True, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_(grad)


def _bsr(out, inn, gen, density=0.5):
    mask = torch.rand(out, inn, generator=gen) < density
    mask[0] = False                                     # an empty row
    crow = torch.zeros(out + 1, dtype=torch.int64)
    crow[1:] = mask.sum(1).cumsum(0)
    col = mask.nonzero()[:, 1].contiguous()
    return crow, col, mask


@pytest.mark.parametrize("name", ALGEBRAS)
def test_opcheck_cpu(name):
    alg = load_algebra(name)
    k, d, r = ac.key_of(alg), alg.dim, alg.rank
    gen = torch.Generator().manual_seed(0)
    crow, col, _ = _bsr(3, 4, gen)
    cases = [
        (ops.mul, (k, _r(2, 3, d, gen=gen), _r(2, 3, d, gen=gen))),
        (ops.mul_backward, (k, _r(5, d, gen=gen), _r(5, d, gen=gen), _r(5, d, gen=gen))),
        (ops.premap, (k, "V", _r(2, 3, d, gen=gen))),
        (ops.postmap, (k, "W", _r(r, 2, 3, gen=gen), _r(3, d, gen=gen))),
        (ops.postmap, (k, "U", _r(r, 4, gen=gen), None)),
        (ops.gemv, (k, _r(3, 4, d, gen=gen), _r(2, 4, d, gen=gen), _r(3, d, gen=gen))),
        (ops.bsr_linear, (k, crow, col, _r(col.numel(), d, gen=gen), _r(2, 4, d, gen=gen), None)),
    ]
    # the full check (AOT dispatch included) for one algebra; the ops' code is the same for all of them
    utils = None if name == "H" else ("test_schema", "test_autograd_registration", "test_faketensor")
    for op, args in cases:
        if utils is None:
            torch.library.opcheck(op, args)
        else:
            torch.library.opcheck(op, args, test_utils=utils)


@pytest.mark.parametrize("name", ALGEBRAS)
def test_reference_ops_agree_with_the_algebra(name):
    alg = load_algebra(name)
    d = alg.dim
    gen = torch.Generator().manual_seed(1)
    x, y = _r(4, 5, d, gen=gen, grad=False), _r(4, 5, d, gen=gen, grad=False)
    torch.testing.assert_close(ac.mul(alg, x, y), alg.mul(x, y))
    torch.testing.assert_close(ac.mul(alg, x, y[0]), alg.mul(x, y[0].expand_as(x)))       # broadcasting
    # the maps compose to the product: W^T ((U x) o (V y))
    m = ac.premap(alg, "U", x) * ac.premap(alg, "V", y)
    torch.testing.assert_close(ac.postmap(alg, "W", m), alg.mul(x, y))
    # linear layer: y_o = sum_i w_oi * x_i + b_o, three ways
    w, b = _r(6, 5, d, gen=gen, grad=False), _r(6, d, gen=gen, grad=False)
    xs = _r(3, 5 * d, gen=gen, grad=False)
    want = (alg.mul(w[None], xs.reshape(3, 1, 5, d)).sum(2) + b).reshape(3, 6 * d)
    torch.testing.assert_close(ac.gemv(alg, w, xs, b), want)
    torch.testing.assert_close(ac.bilinear_linear(alg, w, xs, b), want)
    crow, col, mask = _bsr(6, 5, gen)
    ws = w * mask[..., None]
    want_sparse = (alg.mul(ws[None], xs.reshape(3, 1, 5, d)).sum(2) + b).reshape(3, 6 * d)
    torch.testing.assert_close(ac.bsr_linear(alg, crow, col, w[mask], xs, b), want_sparse)


@pytest.mark.parametrize("name", ["H", "Cross3", "Dual", "M2C"])
def test_gradients(name):
    alg = load_algebra(name)
    d = alg.dim
    gen = torch.Generator().manual_seed(2)
    x, y = _r(3, d, gen=gen), _r(3, d, gen=gen)
    assert torch.autograd.gradcheck(lambda a, b: ac.mul(alg, a, b), (x, y))
    assert torch.autograd.gradgradcheck(lambda a, b: ac.mul(alg, a, b), (x, y))
    w, b, xs = _r(3, 4, d, gen=gen), _r(3, d, gen=gen), _r(2, 4 * d, gen=gen)
    assert torch.autograd.gradcheck(lambda w, x, b: ac.gemv(alg, w, x, b), (w, xs, b))
    assert torch.autograd.gradcheck(lambda w, x, b: ac.bilinear_linear(alg, w, x, b), (w, xs, b))
    crow, col, _ = _bsr(3, 4, gen)
    v = _r(col.numel(), d, gen=gen)
    assert torch.autograd.gradcheck(lambda v, x, b: ac.bsr_linear(alg, crow, col, v, x, b), (v, xs, b))


def test_half_precision_reference_rounds_once():
    alg = load_algebra("H")
    gen = torch.Generator().manual_seed(3)
    w, x = torch.randn(5, 7, 4, generator=gen), torch.randn(2, 28, generator=gen)
    for dt in (torch.float16, torch.bfloat16):
        got = ac.gemv(alg, w.to(dt), x.to(dt))
        assert got.dtype == dt
        want = ac.gemv(alg, w.to(dt).float(), x.to(dt).float()).to(dt)
        assert torch.equal(got, want)


def test_torch_compile_with_custom_ops():
    alg = load_algebra("H")
    gen = torch.Generator().manual_seed(4)
    w, b = _r(3, 4, 4, gen=gen), _r(3, 4, gen=gen)
    crow, col, _ = _bsr(3, 4, gen)
    v = _r(col.numel(), 4, gen=gen)

    def f(x):
        h = ac.gemv(alg, w, x, b) + ac.bilinear_linear(alg, w, x, b) + ac.bsr_linear(alg, crow, col, v, x)
        h4 = h.reshape(-1, 3, 4)
        return ac.mul(alg, h4, h4).sum()

    x = _r(2, 16, gen=gen)
    eager = f(x)
    (ge,) = torch.autograd.grad(eager, x)
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True, dynamic=False)
    got = compiled(x)
    (gc,) = torch.autograd.grad(got, x)
    torch.testing.assert_close(got, eager)
    torch.testing.assert_close(gc, ge)


def test_input_checks():
    alg = load_algebra("H")
    with pytest.raises(ValueError, match="last dimensions"):
        ac.mul(alg, torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="weight must be"):
        ac.gemv(alg, torch.zeros(3, 4), torch.zeros(2, 16))
    with pytest.raises(ValueError, match="in\\*d"):
        ac.gemv(alg, torch.zeros(3, 4, 4), torch.zeros(2, 15))
    with pytest.raises(ValueError, match="bias"):
        ac.gemv(alg, torch.zeros(3, 4, 4), torch.zeros(2, 16), torch.zeros(3))
    with pytest.raises(ValueError, match="scheme map"):
        ac.premap(alg, "X", torch.zeros(2, 4))
    with pytest.raises(ValueError, match="values"):
        ac.bsr_linear(alg, torch.tensor([0, 1]), torch.tensor([0]), torch.zeros(1, 3), torch.zeros(1, 4))


@pytest.fixture
def fresh_backend(monkeypatch):
    _backend.reset()
    yield monkeypatch
    _backend.reset()


def test_no_kernels_on_cpu_tensors():
    assert not ac.kernels_available(torch.zeros(2))
    alg = load_algebra("C")
    assert not ops.use_kernel(alg, "gemv", torch.zeros(2, 2, 2), torch.zeros(1, 2, 2))


def test_backend_off_falls_back(fresh_backend):
    fresh_backend.setenv(_backend.ENV_BACKEND, "off")
    assert ac.backend_name() is None
    assert not ac.kernels_available()
    alg = load_algebra("C")
    x = torch.randn(4, 2)
    torch.testing.assert_close(ac.mul(alg, x, x), alg.mul(x, x))


def test_missing_cupy_falls_back_cleanly(fresh_backend):
    fresh_backend.setitem(sys.modules, "cupy", None)           # `import cupy` raises ImportError
    fresh_backend.delenv(_backend.ENV_BACKEND, raising=False)
    assert ac.backend_name() is None
    assert "cupy" in ac.backend_error()
    assert not ac.kernels_available(torch.zeros(1))
    alg = load_algebra("H")
    w, x = torch.randn(3, 2, 4), torch.randn(5, 8)
    torch.testing.assert_close(ac.gemv(alg, w, x), reference.gemv(alg, w, x.reshape(5, 2, 4), None).reshape(5, 12))


def test_unknown_backend_is_reported(fresh_backend):
    fresh_backend.setenv(_backend.ENV_BACKEND, "bogus")
    assert ac.backend_name() is None
    assert "bogus" in ac.backend_error()


def test_cupy_backend_constructs_without_a_gpu(fresh_backend):
    pytest.importorskip("cupy")
    fresh_backend.setenv(_backend.ENV_BACKEND, "cupy")
    assert ac.backend_name() == "cupy"
    assert not ac.kernels_available(torch.zeros(1))            # CPU tensor: never the kernels


def test_nvrtc_options_select_groups():
    assert ac.nvrtc_options(None) == ("-std=c++17",)
    assert ac.nvrtc_options("mat_bf16") == ("-std=c++17", "-DALGEBRANETS_SELECT", "-DALGEBRANETS_SELECT_MAT_BF16")


def test_auto_linear_hook_stays_off_on_cpu():
    from runtime import functional as F
    from runtime.kernels import choice

    alg = load_algebra("H")
    w, x = torch.randn(3, 2, 4), torch.randn(1, 8)
    assert not choice.cuda_gemv_applies("auto", alg, x, w, None, 1)
    assert not choice.cuda_gemv_applies("block", alg, x, w, None, 1)
    torch.testing.assert_close(F.algebra_linear(x, w, algebra=alg), ac.gemv(alg, w, x))
