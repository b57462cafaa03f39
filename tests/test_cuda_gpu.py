"""The generated kernels on a real GPU (marked `gpu`; skipped without CUDA by conftest).

Run with `pytest -m gpu tests/test_cuda_gpu.py` (benchmarks/gpu_check.sh does).  Without a kernel backend
(CuPy, or ALGEBRANETS_CUDA_BACKEND=nvrtc) the tests skip, unless ALGEBRANETS_REQUIRE_GPU_KERNELS=1: then
they fail.  Every check compares against the torch reference computed in float64 on the CPU from the same
(rounded) inputs, and checks that the kernel really launched.
"""
from __future__ import annotations

import os

import pytest
import torch

from runtime.kernels import cuda as ac
from runtime import load_algebra
from runtime.kernels.cuda import _backend, _launch, ops, reference

pytestmark = pytest.mark.gpu

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "RandH", "RandM4R"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float64: 1e-12, torch.float32: 3e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture(scope="module", autouse=True)
def kernels():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if not ac.kernels_available():
        msg = f"no CUDA kernel backend: {ac.backend_error()}"
        if os.environ.get("ALGEBRANETS_REQUIRE_GPU_KERNELS", "") not in ("", "0"):
            pytest.fail(msg)
        pytest.skip(msg)
    n = ac.warmup(ALGEBRAS, dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16))
    assert n > 0
    return ac.backend_name()


def close(got: torch.Tensor, want: torch.Tensor, what: str):
    """|got - want| <= tol(dtype) * max(1, max |want|); want computed in float64 on the CPU."""
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype, want.dtype)
    g, w = got.detach().cpu().double(), want.detach().cpu().double()
    scale = max(1.0, float(w.abs().max()) if w.numel() else 1.0)
    err = float((g - w).abs().max()) if w.numel() else 0.0
    assert err <= TOL[got.dtype] * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


def cpu64(fn, *ts, dtype):
    """fn on float64 CPU copies of the (already rounded) inputs, rounded to dtype."""
    args = [t.detach().cpu().double() if isinstance(t, torch.Tensor) and t.is_floating_point()
            else (t.cpu() if isinstance(t, torch.Tensor) else t) for t in ts]
    out = fn(*args)
    return tuple(o.to(dtype) for o in out) if isinstance(out, tuple) else out.to(dtype)


class launched:
    """Context manager asserting that kernels whose name contains `part` were launched."""

    def __init__(self, part: str):
        self.part = part

    def __enter__(self):
        self.before = sum(v for k, v in _launch.launches.items() if self.part in k)

    def __exit__(self, *exc):
        if exc[0] is None:
            after = sum(v for k, v in _launch.launches.items() if self.part in k)
            assert after > self.before, f"no kernel matching {self.part!r} ran"


def _rand(*shape, dtype, device="cuda", seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).to(device)


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("dtype", DTYPES + [torch.float64])
def test_mul_forward_backward(name, dtype):
    alg = load_algebra(name)
    d = alg.dim
    x, y, g = (_rand(1031, d, dtype=dtype, seed=s) for s in range(3))
    with launched("_mul_fwd_"):
        z = ac.mul(alg, x, y)
    close(z, cpu64(lambda a, b: reference.mul(alg, a, b), x, y, dtype=dtype), f"{name} mul")
    with launched("_mul_bwd_"):
        gx, gy = ops.mul_backward(ac.key_of(alg), x, y, g)
    wx, wy = cpu64(lambda a, b, c: reference.mul_backward(alg, a, b, c), x, y, g, dtype=dtype)
    close(gx, wx, f"{name} grad x")
    close(gy, wy, f"{name} grad y")
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    ac.mul(alg, xr, yr).backward(g)
    close(xr.grad, wx, f"{name} autograd x")


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_scheme_maps(name, dtype):
    alg = load_algebra(name)
    d, r = alg.dim, alg.rank
    x = _rand(7, 131, d, dtype=dtype)
    m = _rand(r, 7, 131, dtype=dtype, seed=1)
    bias = _rand(131, d, dtype=dtype, seed=2)
    for P in "UVW":
        with launched(f"_premap_{P}_"):
            got = ac.premap(alg, P, x)
        close(got, cpu64(lambda a: reference.premap(alg, P, a), x, dtype=dtype), f"{name} premap {P}")
        with launched(f"_postmap_{P}_"):
            got = ac.postmap(alg, P, m, bias)
        close(got, cpu64(lambda a, b: reference.postmap(alg, P, a, b), m, bias, dtype=dtype), f"{name} postmap {P}")


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemv(name, dtype):
    alg = load_algebra(name)
    d = alg.dim
    for out, inn in ((67, 515), (5, 4099), (300, 64)):       # odd sizes: unaligned rows, split rows, tails
        w = _rand(out, inn, d, dtype=dtype, seed=out)
        bias = _rand(out, d, dtype=dtype, seed=inn)
        for batch in (1, 2, 3, 8, 16, 21):
            x = _rand(batch, inn * d, dtype=dtype, seed=batch)
            with launched("_gemv_"):
                got = ac.gemv(alg, w, x, bias)
            want = cpu64(lambda a, b, c: reference.gemv(alg, a, b.reshape(batch, inn, d), c), w, x, bias, dtype=dtype)
            close(got, want.reshape(batch, out * d), f"{name} gemv out={out} in={inn} batch={batch}")


@pytest.mark.parametrize("name", ["H", "M4R", "Cross3"])
def test_gemv_every_tile_and_split(name):
    alg = load_algebra(name)
    d = alg.dim
    w = _rand(37, 1000, d, dtype=torch.float32)
    x = _rand(16, 1000, d, dtype=torch.float32, seed=1)
    for tile in _launch.table(alg).tiles:
        for splits in (1, 2, 4, 8):
            got = _launch.gemv(alg, w, x[:tile], None, tile=tile, splits=splits)
            close(got, cpu64(lambda a, b: reference.gemv(alg, a, b, None), w, x[:tile], dtype=torch.float32),
                  f"{name} tile {tile} splits {splits}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gemv_persistent_row_groups(dtype):
    """More row groups than resident blocks: every block strides over several of them."""
    alg = load_algebra("H")
    w = _rand(12000, 24, 4, dtype=dtype)
    x = _rand(3, 24, 4, dtype=dtype, seed=1)
    bias = _rand(12000, 4, dtype=dtype, seed=2)
    for splits in (1, 2):
        got = _launch.gemv(alg, w, x, bias, splits=splits)
        want = torch.einsum("oip,bij,pjk->bok", w.double(), x.double(), alg.structure_tensor(torch.float64, "cuda"))
        close(got, (want + bias.double()).to(dtype), f"persistent splits={splits}")


def random_bsr(out, inn, sparsity, seed=0, device="cuda"):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(out, inn, generator=g) >= sparsity
    crow = torch.zeros(out + 1, dtype=torch.int64)
    crow[1:] = mask.sum(1).cumsum(0)
    col = mask.nonzero()[:, 1].contiguous()
    return crow.to(device), col.to(device)


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bsr(name, dtype):
    alg = load_algebra(name)
    d = alg.dim
    out, inn = 77, 301
    for sparsity in (0.0, 0.8, 0.99):
        crow, col = random_bsr(out, inn, sparsity)
        values = _rand(col.numel(), d, dtype=dtype)
        bias = _rand(out, d, dtype=dtype, seed=3)
        for batch in (1, 5, 40):
            x = _rand(batch, inn * d, dtype=dtype, seed=batch)
            with launched("_bsr_"):
                got = ac.bsr_linear(alg, crow, col, values, x, bias)
            want = cpu64(lambda v, xx, b: reference.bsr_linear(alg, crow.cpu(), col.cpu(), v, xx.reshape(batch, inn, d), b),
                         values, x, bias, dtype=dtype)
            close(got, want.reshape(batch, out * d), f"{name} bsr sparsity={sparsity} batch={batch}")


@pytest.mark.parametrize("name", ["C", "H", "M2R", "M4R", "M2C"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bilinear_linear(name, dtype):
    alg = load_algebra(name)
    d = alg.dim
    w = _rand(96, 80, d, dtype=dtype)
    bias = _rand(96, d, dtype=dtype, seed=1)
    x = _rand(33, 80 * d, dtype=dtype, seed=2)
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with launched("_premap_V_"), launched("_postmap_W_"):
            got = ac.bilinear_linear(alg, w, x, bias)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    want = cpu64(lambda a, b, c: reference.gemv(alg, a, b.reshape(33, 80, d), c), w, x, bias, dtype=dtype)
    # the scheme's combinations round in the storage type before the GEMM (bf16: a few ulps)
    tol = 6 if dtype == torch.bfloat16 else 10
    g, wt = got.float().cpu(), want.reshape(33, 96 * d).float()
    assert float((g - wt).abs().max()) <= tol * TOL[dtype] * max(1.0, float(wt.abs().max())), name


@pytest.mark.parametrize("name", ["H", "M2C", "Dual"])
def test_autograd_on_cuda(name):
    alg = load_algebra(name)
    d = alg.dim
    crow, col = random_bsr(9, 13, 0.5)
    fns = {
        "gemv": lambda w, x, b, v, cr, co: ac.gemv(alg, w, x, b),
        "bilinear": lambda w, x, b, v, cr, co: ac.bilinear_linear(alg, w, x, b),
        "bsr": lambda w, x, b, v, cr, co: ac.bsr_linear(alg, cr, co, v, x, b),
        "mul": lambda w, x, b, v, cr, co: ac.mul(alg, x.reshape(4, 13, d), w[0][None]),
    }
    leaves = [_rand(9, 13, d, dtype=torch.float32), _rand(4, 13 * d, dtype=torch.float32, seed=1),
              _rand(9, d, dtype=torch.float32, seed=2), _rand(col.numel(), d, dtype=torch.float32, seed=3)]
    leaves = [t.requires_grad_() for t in leaves]
    leaves64 = [t.detach().cpu().double().requires_grad_() for t in leaves]
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for what, fn in fns.items():
            grads = torch.autograd.grad(fn(*leaves, crow, col).square().sum(), leaves, allow_unused=True)
            grads64 = torch.autograd.grad(fn(*leaves64, crow.cpu(), col.cpu()).square().sum(), leaves64,
                                          allow_unused=True)
            for i, (g, g64) in enumerate(zip(grads, grads64)):
                if g64 is None:
                    assert g is None or not g.any(), (what, i)
                    continue
                scale = max(1.0, float(g64.abs().max()))
                err = float((g.cpu().double() - g64).abs().max())
                assert err <= 1e-4 * scale, f"{name} {what} grad {i}: {err:.3g}"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def test_opcheck_on_cuda():
    alg = load_algebra("H")
    k = ac.key_of(alg)
    w, x, b = _rand(5, 6, 4, dtype=torch.float32), _rand(3, 6, 4, dtype=torch.float32, seed=1), \
        _rand(5, 4, dtype=torch.float32, seed=2)
    crow, col = random_bsr(5, 6, 0.5)
    for op, args in ((ops.mul, (k, x, x)), (ops.gemv, (k, w, x, b)), (ops.premap, (k, "V", x)),
                     (ops.postmap, (k, "W", _rand(8, 3, 5, dtype=torch.float32), b)),
                     (ops.bsr_linear, (k, crow, col, _rand(col.numel(), 4, dtype=torch.float32), x, b))):
        torch.library.opcheck(op, args)


def test_torch_compile_on_cuda():
    alg = load_algebra("H")
    w, b = _rand(32, 48, 4, dtype=torch.float32), _rand(32, 4, dtype=torch.float32, seed=1)

    def f(x):
        h = ac.gemv(alg, w, x, b).reshape(x.shape[0], 32, 4)
        return ac.mul(alg, h, h)

    x = _rand(2, 48 * 4, dtype=torch.float32, seed=2)
    with launched("_gemv_"):
        got = torch.compile(f, fullgraph=True)(x)
    torch.testing.assert_close(got, f(x), rtol=1e-5, atol=1e-5)


def test_runs_on_the_current_stream():
    alg = load_algebra("H")
    w = _rand(512, 2048, 4, dtype=torch.float32)
    s = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        x = torch.ones(1, 2048 * 4, device="cuda")
        x.mul_(0.5)                                   # produced on s; the kernel must run after it on s
        y = ac.gemv(alg, w, x)
    s.synchronize()
    close(y, cpu64(lambda a, b: reference.gemv(alg, a, b.reshape(1, 2048, 4), None).reshape(1, -1), w, x,
                   dtype=torch.float32), "stream")


def test_misaligned_views_are_handled():
    alg = load_algebra("H")
    base = _rand(1 + 37 * 4, dtype=torch.float32)
    x = base[1:].reshape(37, 4)                       # 4-byte offset: not 16-byte aligned
    assert x.data_ptr() % 16
    y = _rand(37, 4, dtype=torch.float32, seed=1)
    close(ac.mul(alg, x, y), cpu64(lambda a, b: reference.mul(alg, a, b), x, y, dtype=torch.float32), "misaligned")


def test_nvrtc_ctypes_backend(monkeypatch):
    monkeypatch.setenv(_backend.ENV_BACKEND, "nvrtc")
    _backend.reset()
    try:
        if ac.backend_name() != "nvrtc":
            pytest.skip(f"nvrtc backend unavailable: {ac.backend_error()}")
        alg = load_algebra("C")
        w, x = _rand(40, 300, 2, dtype=torch.float32), _rand(2, 600, dtype=torch.float32, seed=1)
        with launched("_gemv_"):
            got = ac.gemv(alg, w, x)
        close(got, cpu64(lambda a, b: reference.gemv(alg, a, b.reshape(2, 300, 2), None).reshape(2, -1), w, x,
                         dtype=torch.float32), "nvrtc backend")
    finally:
        monkeypatch.delenv(_backend.ENV_BACKEND)
        _backend.reset()


def test_auto_linear_uses_the_gemv_kernel():
    from runtime.functional import algebra_linear

    alg = load_algebra("H")
    w, b = _rand(64, 96, 4, dtype=torch.float32), _rand(64, 4, dtype=torch.float32, seed=1)
    x = _rand(2, 96 * 4, dtype=torch.float32, seed=2)
    with launched("_gemv_"):
        y = algebra_linear(x, w, b, algebra=alg)                      # method auto (the default)
    want = cpu64(lambda a, xx, c: reference.gemv(alg, a, xx.reshape(2, 96, 4), c).reshape(2, -1), w, x, b,
                 dtype=torch.float32)
    close(y, want, "auto linear")
    before = sum(v for k, v in _launch.launches.items() if "_gemv_" in k)
    y2 = algebra_linear(x, w, b, algebra=alg, method="block")
    assert sum(v for k, v in _launch.launches.items() if "_gemv_" in k) == before
    torch.testing.assert_close(y2, y, rtol=1e-4, atol=1e-4)
    with launched("_gemv_"):
        y3 = torch.compile(lambda t: algebra_linear(t, w, b, algebra=alg))(x)
    torch.testing.assert_close(y3, y, rtol=1e-5, atol=1e-5)
