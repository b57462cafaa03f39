"""The generated CPU kernels (runtime.kernels.cpu): every variant against the block path in float64 for every built-in
algebra and a user algebra (octonions), the layers' method="kernel" / "auto" dispatch, the element-sparse
inference layers, autograd, torch.compile / torch.export, the compiler cache, and the no-compiler fallback.

The kernels compile once per content hash into the user cache (runtime.kernels.cpu.cache_dir()), so only the first
session on a machine pays for the compiler.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from codegen.build import build
from runtime import load_algebra
from runtime.kernels import choice as kernel_choice, cpu
from runtime import sparsity as sp
from runtime.kernels.cpu import _build
from runtime.functional import algebra_conv1d, algebra_conv2d, algebra_linear
from runtime.layers import AlgebraLinear

from test_build import OCTONIONS

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O", "RandH", "RandM4R"]
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(cpu.find_compiler() is None, reason="needs a C++ compiler")]


@pytest.fixture(scope="module")
def octonions(tmp_path_factory):
    """A user algebra built from its own spec folder (like tests/test_build.py): the octonions typed from the
    Fano plane, another basis than the built-in O's (so another scheme, moved through the structural route)."""
    specs = tmp_path_factory.mktemp("specs")
    (specs / "octonions.py").write_text(OCTONIONS)
    out = tmp_path_factory.mktemp("gen")
    build(specs, out)
    return load_algebra("O", out)


@pytest.fixture(params=ALGEBRAS + ["Fano"])
def alg(request, octonions):
    return octonions if request.param == "Fano" else load_algebra(request.param)


def block_reference(x, w, b, A):
    """The block path (one real GEMM with the expanded weight) in float64."""
    return algebra_linear(x.double(), w.double(), None if b is None else b.double(), A, method="block")


def assert_matches(y, ref, fan_in, dtype):
    assert y.dtype == dtype and y.shape == ref.shape
    tol = 1e-11 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol * math.sqrt(max(fan_in, 1)) * 4)


def variants(A, sparse):
    """The kernel variants this algebra has (the scheme variant needs its rank in registers)."""
    out = [None, "small", "lanes_naive"]
    if load_kernel_variant_ok(A, sparse):
        out.append("lanes_scheme")
    return out


def load_kernel_variant_ok(A, sparse) -> bool:
    w = torch.randn(1, 1, A.dim)
    try:
        cpu.dense(A, w, torch.randn(1, A.dim), variant="lanes_scheme")
        return True
    except RuntimeError as e:
        assert "not available" in str(e)
        return False


SHAPES = [(1, 1), (3, 17), (17, 3), (3, 1000), (1000, 3)]        # (out, in) in elements


# ------------------------------------------------------------------------------------------ kernels
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernels_match_block_path(alg, dtype, sparse):
    """Every variant, with and without bias, int64 and int32 columns; sparse weights with an empty row."""
    torch.manual_seed(1)
    d = alg.dim
    for out, inn in SHAPES:
        w, b = torch.randn(out, inn, d, dtype=dtype), torch.randn(out, d, dtype=dtype)
        if sparse:
            w = w * (torch.rand(out, inn) < 0.3).unsqueeze(-1).to(dtype)
            w[out // 2] = 0                                            # an empty row
            crow, col, values = sp.block_csr(w)
            assert (crow[1:] == crow[:-1]).any()
        for batch in ((1, 3, 17, 64) if sparse else (1, 3, 8, 17)):     # 3, 8: paired rows (lanes)
            x = torch.randn(batch, inn * d, dtype=dtype)
            for bias in (b, None):
                ref = block_reference(x, w, bias, alg)
                for v in variants(alg, sparse):
                    if sparse:
                        for c in (col, col.int()):
                            assert_matches(cpu.bsr_linear(alg, crow, c, values, x, bias, variant=v), ref, inn * d,
                                           dtype)
                    else:
                        assert_matches(cpu.dense(alg, w, x, bias, variant=v), ref, inn * d, dtype)


def test_sparse_kernel_with_no_nonzeros_gives_the_bias():
    A = load_algebra("H")
    w = torch.zeros(5, 7, 4, dtype=torch.float64)
    crow, col, values = sp.block_csr(w)
    b = torch.randn(5, 4, dtype=torch.float64)
    x = torch.randn(3, 28, dtype=torch.float64)
    for v in variants(A, True):
        y = cpu.bsr_linear(A, crow, col, values, x, b, variant=v)
        assert torch.equal(y, b.reshape(1, 20).expand(3, 20))


@pytest.mark.parametrize("name", ["C", "H", "M3R", "M4R"])
def test_noncontiguous_inputs_and_batch_zero(name):
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(2)
    w, b = torch.randn(9, 6, d, dtype=torch.float64), torch.randn(9, d, dtype=torch.float64)
    crow, col, values = sp.block_csr(w * (torch.rand(9, 6) < 0.5).unsqueeze(-1).double())
    wt = torch.randn(6, 9, d, dtype=torch.float64).transpose(0, 1)        # a non-contiguous weight
    for batch in (1, 3, 17):
        inputs = [torch.randn(batch, 12 * d, dtype=torch.float64)[:, ::2],    # feature stride 2
                  torch.randn(6 * d, batch, dtype=torch.float64).t(),          # batch stride 1
                  torch.randn(2, batch, 6 * d, dtype=torch.float64)[1]]       # an offset view
        for x in inputs:
            for v in variants(A, False):
                assert_matches(cpu.dense(A, w, x, b, variant=v), block_reference(x, w, b, A), 6 * d, torch.float64)
                assert_matches(cpu.dense(A, wt, x, b, variant=v), block_reference(x, wt, b, A), 6 * d,
                               torch.float64)
                ys = cpu.bsr_linear(A, crow, col, values, x, b, variant=v)
                dense_w = torch.zeros_like(w)
                rows = torch.repeat_interleave(torch.arange(9), crow[1:] - crow[:-1])
                dense_w[rows, col] = values
                assert_matches(ys, block_reference(x, dense_w, b, A), 6 * d, torch.float64)
    x0 = torch.randn(0, 6 * d, dtype=torch.float64)
    assert cpu.dense(A, w, x0, b).shape == (0, 9 * d)
    assert cpu.bsr_linear(A, crow, col, values, x0, b).shape == (0, 9 * d)
    assert AlgebraLinear(6, 9, A, method="kernel").double()(x0).shape == (0, 9 * d)


def test_threads_do_not_change_results():
    """Rows are split between threads, never the sums of one row: 1 and 2 threads agree bitwise."""
    A = load_algebra("H")
    torch.manual_seed(3)
    w, x = torch.randn(300, 200, 4), torch.randn(3, 800)
    crow, col, values = sp.block_csr(w * (torch.rand(300, 200) < 0.2).unsqueeze(-1))
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (cpu.dense(A, w, x), cpu.bsr_linear(A, crow, col, values, x))
        torch.set_num_threads(2)
        two = (cpu.dense(A, w, x), cpu.bsr_linear(A, crow, col, values, x))
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_bad_inputs_are_refused_clearly():
    A = load_algebra("H")
    w, x = torch.randn(3, 5, 4), torch.randn(2, 20)
    with pytest.raises(ValueError, match="variant"):
        cpu.dense(A, w, x, variant="fast")
    with pytest.raises(TypeError, match="float32 or float64"):
        cpu.dense(A, w.half(), x.half())
    with pytest.raises(TypeError, match="dtype"):
        cpu.dense(A, w, x.double())
    with pytest.raises(ValueError, match=r"\(\.\.\., 20\)"):
        cpu.dense(A, w, torch.randn(2, 24))
    crow, col, values = sp.block_csr(w)
    bad = col.clone()
    bad[0] = 5
    with pytest.raises(RuntimeError, match=r"1 column indices lie outside \[0, 5\)"):
        cpu.bsr_linear(A, crow, bad, values, x)
    with pytest.raises(RuntimeError, match="crow must"):
        cpu.bsr_linear(A, crow.flip(0), col, values, x)
    if not load_kernel_variant_ok(load_algebra("M4R"), False):
        with pytest.raises(RuntimeError, match="not available"):
            cpu.dense("M4R", torch.randn(2, 2, 16), torch.randn(1, 32), variant="lanes_scheme")


# --------------------------------------------------------------------------------------- the layers
def count_calls(monkeypatch, name):
    calls = []
    real = getattr(cpu, name)

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(cpu, name, spy)
    return calls


@pytest.mark.parametrize("name", ["C", "H", "M2C"])
def test_method_kernel_layers_match_block(name):
    torch.manual_seed(4)
    lin = AlgebraLinear(7, 5, name, method="kernel").double()
    ref = AlgebraLinear(7, 5, name, method="block").double()
    ref.load_state_dict(lin.state_dict())
    d = lin.algebra.dim
    for batch in (1, 4, 20):
        x = torch.randn(batch, 7 * d, dtype=torch.float64)
        assert_matches(lin(x), ref(x), 7 * d, torch.float64)
        with torch.inference_mode():
            assert_matches(lin(x), ref(x), 7 * d, torch.float64)


def test_auto_uses_the_kernel_for_small_inference_batches_only(monkeypatch):
    calls = count_calls(monkeypatch, "dense_checked")
    lin = AlgebraLinear(8, 6, "H")
    limit = kernel_choice.cpu_max_batch(lin.algebra)
    with torch.no_grad():
        y_small = lin(torch.randn(limit, 32))
        assert len(calls) == 1
        lin(torch.randn(limit + 1, 32))
        assert len(calls) == 1
    lin(torch.randn(1, 32)).sum().backward()              # training keeps the torch paths
    assert len(calls) == 1 and lin.weight.grad is not None
    with torch.inference_mode():
        lin(torch.randn(1, 32))
    assert len(calls) == 2
    assert y_small.shape == (limit, 24)
    conv_calls = count_calls(monkeypatch, "dense")
    with torch.no_grad():                                 # convolutions: the kernel only when asked
        algebra_conv1d(torch.randn(1, 8, 5), torch.randn(2, 2, 3, 4), None, "H")
    assert not conv_calls


@pytest.mark.parametrize("name", ["C", "H", "M2R"])
def test_conv_through_the_kernel(name, monkeypatch):
    calls = count_calls(monkeypatch, "dense_checked")
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(5)
    x1 = torch.randn(2, 3 * d, 9, dtype=torch.float64)
    w1 = torch.randn(4, 3, 3, d, dtype=torch.float64)
    b = torch.randn(4, d, dtype=torch.float64)
    for kw in (dict(), dict(stride=2, padding=1), dict(dilation=2, padding="same")):
        y = algebra_conv1d(x1, w1, b, A, method="kernel", **kw)
        assert_matches(y, algebra_conv1d(x1, w1, b, A, method="block", **kw), 9 * d, torch.float64)
    x2 = torch.randn(1, 3 * d, 5, 6, dtype=torch.float64)
    w2 = torch.randn(4, 3, 1, 1, d, dtype=torch.float64)
    y = algebra_conv2d(x2, w2, b, A, method="kernel")
    assert_matches(y, algebra_conv2d(x2, w2, b, A, method="block"), 3 * d, torch.float64)
    assert len(calls) == 4


def test_kernel_falls_back_with_a_warning_where_it_cannot_run():
    lin = AlgebraLinear(4, 3, "H", method="kernel")
    x = torch.randn(2, 16)
    with pytest.warns(RuntimeWarning, match="float32 / float64"):
        y = lin.to(torch.bfloat16)(x.bfloat16())
    assert y.dtype == torch.bfloat16
    w = torch.randn(4, 1, 3, 4)
    with pytest.warns(RuntimeWarning, match="groups=2"):
        algebra_conv1d(torch.randn(1, 8, 5), w, None, "H", groups=2, method="kernel")


def test_forward_mode_tangents_are_never_dropped():
    """The kernels have no forward-mode AD formula: a dual input takes the torch path (block propagates the
    tangent) instead of returning a result without one, for auto, method='kernel' and the sparse layers."""
    import torch.autograd.forward_ad as fwAD

    torch.manual_seed(8)
    lin = AlgebraLinear(6, 5, "H").double().eval()
    sp.prune_elements_(lin, 0.5)
    x, t = torch.randn(1, 24, dtype=torch.float64), torch.randn(1, 24, dtype=torch.float64)
    with torch.no_grad():
        want = lin(x)
    # the tangent of a linear map is the map of the tangent (no bias)
    want_t = algebra_linear(t, lin.weight, None, "H", method="block")
    for layer, method in ((lin, "auto"), (lin, "kernel"), (sp.to_block_sparse(lin, 0.0), None)):
        if method:
            layer.method = method
        with torch.no_grad(), fwAD.dual_level(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            primal, tangent = fwAD.unpack_dual(layer(fwAD.make_dual(x, t)))
        assert tangent is not None, method
        torch.testing.assert_close(primal, want)
        torch.testing.assert_close(tangent, want_t.detach())


def test_sparse_inference_layers_run_the_kernel(monkeypatch):
    calls = count_calls(monkeypatch, "bsr_checked")
    torch.manual_seed(6)
    lin = AlgebraLinear(40, 30, "H")
    sp.prune_elements_(lin, 0.9)
    fast = sp.to_block_sparse(lin)
    x = torch.randn(5, 160)
    with torch.no_grad():
        assert_matches(fast(x), lin(x).double(), 160, torch.float32)
    assert len(calls) == 1


# ----------------------------------------------------------------------------------------- autograd
@pytest.mark.parametrize("name", ["C", "H", "Cross3"])
def test_gradients_are_exact_and_twice_differentiable(name):
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(7)
    x = torch.randn(3, 4 * d, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, d, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, d, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return algebra_linear(x, w, b, A, method="kernel")

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))
    crow, col, values = sp.block_csr(w.detach() * (torch.rand(5, 4) < 0.6).unsqueeze(-1).double())
    values.requires_grad_(True)

    def g(x, values, b):
        return cpu.bsr_linear(A, crow, col, values, x, b)

    assert torch.autograd.gradcheck(g, (x, values, b))
    assert torch.autograd.gradgradcheck(g, (x, values, b))


@pytest.mark.parametrize("name", ["H", "M3R"])
def test_kernel_path_records_autograd_exactly_when_some_input_needs_it(name):
    """The kernel op skips its autograd wrapper only when nothing needs a gradient: frozen weights with an
    input that requires grad still get the exact input gradient; under no_grad the result has no graph."""
    torch.manual_seed(8)
    lin = AlgebraLinear(6, 5, name, method="kernel").double()
    ref = AlgebraLinear(6, 5, name, method="block").double()
    ref.load_state_dict(lin.state_dict())
    d = lin.algebra.dim
    x = torch.randn(2, 6 * d, dtype=torch.float64)
    with torch.no_grad():
        y = lin(x)
    assert y.grad_fn is None and not y.requires_grad
    assert_matches(y, ref(x).detach(), 6 * d, torch.float64)
    lin.requires_grad_(False)
    ref.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    g = torch.randn(2, 5 * d, dtype=torch.float64)
    (lin(xg) * g).sum().backward()
    (ref(xr) * g).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)


def test_opcheck():
    A = load_algebra("H")
    key = cpu.load_kernels(A)
    w, x, b = torch.randn(3, 5, 4), torch.randn(2, 5, 4), torch.randn(3, 4)
    torch.library.opcheck(torch.ops.algebranets_cpu.dense.default, (key, w, x, b, -1))
    crow, col, values = sp.block_csr(w * (torch.rand(3, 5) < 0.5).unsqueeze(-1))
    torch.library.opcheck(torch.ops.algebranets_cpu.bsr.default, (key, crow, col, values, x, b, -1))


# ------------------------------------------------------------------------------- compile and export
def test_torch_compile_fullgraph_runs_the_kernel_op():
    torch._dynamo.reset()
    torch.manual_seed(8)
    lin = AlgebraLinear(6, 5, "H", method="kernel")
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm.code)
        return gm.forward

    compiled = torch.compile(lin, fullgraph=True, backend=backend)
    x = torch.randn(2, 24)
    with torch.no_grad():
        assert torch.allclose(compiled(x), lin(x), atol=1e-6)
    assert any("algebranets_cpu.dense" in g for g in graphs)
    y = torch.compile(lin, fullgraph=True, backend="aot_eager")(x)     # autograd through the op
    y.sum().backward()
    ref = AlgebraLinear(6, 5, "H", method="block")
    ref.load_state_dict(lin.state_dict())
    ref(x).sum().backward()
    assert torch.allclose(lin.weight.grad, ref.weight.grad, atol=1e-5)


def test_torch_export_with_dense_and_sparse_kernels():
    torch.manual_seed(9)
    lin = AlgebraLinear(6, 5, "H", method="kernel").eval()
    x = torch.randn(2, 24)
    ep = torch.export.export(lin, (x,))
    assert "algebranets_cpu.dense" in ep.graph_module.code
    assert torch.allclose(ep.module()(x), lin(x), atol=1e-6)
    sp.prune_elements_(lin, 0.5)
    fast = sp.to_block_sparse(lin, 0.0).eval()
    with torch.no_grad():
        ep = torch.export.export(fast, (x,))
        assert "algebranets_cpu.bsr" in ep.graph_module.code
        assert torch.allclose(ep.module()(x), fast(x), atol=1e-6)


# ------------------------------------------------------------------------------ compiler and cache
def test_generated_cpp_compiles_without_warnings(octonions, tmp_path):
    cxx = cpu.find_compiler()
    sources = [load_algebra(n).path / f"{n}_cpu.cpp" for n in ALGEBRAS] + [octonions.path / "O_cpu.cpp"]
    base = [cxx, "-std=c++17", "-march=native", "-fopenmp-simd", "-Wall", "-Wextra", "-Werror", "-c", "-o",
            os.devnull]
    jobs = [[*base, "-O0", str(s)] for s in sources] + [[*base, "-O3", str(sources[2])]]     # H also at -O3
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for cmd in jobs]
    for cmd, p in zip(jobs, procs):
        _, err = p.communicate()
        assert p.returncode == 0, f"{' '.join(cmd)}:\n{err}"


def test_libraries_are_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv(_build.ENV_CACHE, str(tmp_path / "cache"))
    cxx = cpu.find_compiler()
    src = tmp_path / "tiny_cpu.cpp"
    src.write_text('extern "C" int tiny_cpu_abi() { return 1; }\n')
    first = _build.kernel_library(cxx, src, "tiny")
    assert first.parent == tmp_path / "cache" / "cpu" / "kernels" and first.is_file()

    def no_compile(*args, **kwargs):
        raise AssertionError("rebuilt a cached library")

    monkeypatch.setattr(_build, "compile_library", no_compile)
    assert _build.kernel_library(cxx, src, "tiny") == first       # nothing changed: no rebuild
    src.write_text(src.read_text() + "// edited\n")
    with pytest.raises(AssertionError, match="rebuilt"):
        _build.kernel_library(cxx, src, "tiny")                   # new content: a new library


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(_build.ENV_CACHE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cpu.cache_dir() == tmp_path / "algebranets" / "cpu"
    monkeypatch.setenv(_build.ENV_CACHE, str(tmp_path / "x"))
    assert cpu.cache_dir() == tmp_path / "x" / "cpu"


NO_COMPILER = r'''
import warnings, torch
from runtime import sparsity as sp
from runtime.kernels import cpu
from runtime.layers import AlgebraLinear
from runtime.functional import algebra_linear
torch.manual_seed(0)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    lin = AlgebraLinear(5, 4, "H", method="kernel")
    x = torch.randn(2, 20)
    y = lin(x)
    auto = AlgebraLinear(5, 4, "C")
    with torch.no_grad():
        auto(torch.randn(1, 10)); auto(torch.randn(1, 10))
    sp.prune_elements_(lin, 0.5)
    fast = sp.to_block_sparse(lin, 0.0)
    with torch.no_grad():
        ys = fast(x)
ref = algebra_linear(x, lin.weight, lin.bias, "H", method="block")
kinds = [w.category.__name__ for w in caught if issubclass(w.category, cpu.KernelUnavailableWarning)]
assert kinds == ["KernelUnavailableWarning"], [str(w.message) for w in caught]
assert "was not found" in str([w.message for w in caught])
assert torch.allclose(ys, ref, atol=1e-5)
assert not cpu.kernels_available()
print("ok")
'''


def test_no_compiler_warns_once_and_runs_the_torch_paths(tmp_path):
    env = dict(os.environ, ALGEBRANETS_CXX=str(tmp_path / "no-such-g++"), ALGEBRANETS_CACHE=str(tmp_path / "c"),
               PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", NO_COMPILER], env=env, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]
