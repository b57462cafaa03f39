"""The generated CUDA sources, compiled for the CPU (g++ + the minimal host shim) and checked.

* the `__host__ __device__` arithmetic of every algebra and scheme (naive product, scheme product,
  multiply-accumulate, both gradients naive and through the permuted scheme, the six scheme maps) against
  the exact structure constants, with hypothesis (small integers: every result is exact in double);
* the half / bfloat16 conversions against numpy / torch, bit for bit;
* the thread-independent kernels (elementwise product and gradients, pre- and post-maps) launched through
  the shim, and the gemv / block-sparse per-lane code summed over lanes, for every storage type, against
  the torch reference;
* the launch glue (`runtime.kernels.cuda._launch`: tiles, splits, grids, argument order) driving the host build.

One shared library for every built-in algebra is built per session (g++ -O0, a few seconds).
"""
from __future__ import annotations

import json
import os
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import load_algebra
from runtime.kernels.cuda import _backend, _launch, reference
from cuda_host import HostBackend, HostLibrary, find_compiler

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O"]
REQUIRE = os.environ.get("ALGEBRANETS_REQUIRE_NVCC", "") not in ("", "0")
DTYPES = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}


@pytest.fixture(scope="session")
def host_lib(tmp_path_factory):
    if find_compiler() is None:
        msg = "no C++ compiler (g++) for the host build of the generated CUDA code"
        if REQUIRE:
            pytest.fail(msg + " (ALGEBRANETS_REQUIRE_NVCC is set)")
        pytest.skip(msg)
    algs = [load_algebra(n) for n in ALGEBRAS]
    return HostLibrary.build(algs, tmp_path_factory.mktemp("cuda_host"))


def test_host_build_is_warning_free(host_lib):
    assert "warning" not in host_lib.warnings, host_lib.warnings[:4000]


# ------------------------------------------------------------------------------ exact arithmetic
class Exact:
    """Exact structure constants and scheme of a built algebra, from its manifest."""

    def __init__(self, alg):
        man = json.loads((alg.path / "manifest.json").read_text())
        self.d = alg.dim
        self.r = alg.rank
        self.T = [(i, j, k, Fraction(v)) for i, j, k, v in man["structure"]]
        sch = man["scheme"]
        self.P = {P: [[Fraction(v) for v in row] for row in sch[P]] for P in "UVW"}
        coeffs = {c for _, _, _, c in self.T} | {v for P in "UVW" for row in self.P[P] for v in row}
        self.dyadic = all(c.denominator & (c.denominator - 1) == 0 for c in coeffs)

    def mul(self, x, y):
        z = [Fraction(0)] * self.d
        for i, j, k, c in self.T:
            z[k] += c * x[i] * y[j]
        return z

    def grad_left(self, y, g):
        z = [Fraction(0)] * self.d
        for i, j, k, c in self.T:
            z[i] += c * y[j] * g[k]
        return z

    def grad_right(self, x, g):
        z = [Fraction(0)] * self.d
        for i, j, k, c in self.T:
            z[j] += c * x[i] * g[k]
        return z

    def premap(self, P, x):
        return [sum((c * v for c, v in zip(row, x)), Fraction(0)) for row in self.P[P]]

    def postmap(self, P, m):
        M = self.P[P]
        return [sum((M[s][j] * m[s] for s in range(self.r)), Fraction(0)) for j in range(self.d)]


def _check(got: np.ndarray, want: list, exact: bool, what: str):
    want_f = np.array([float(v) for v in want])
    if exact:
        assert np.array_equal(got, want_f), f"{what}: {got} != {want_f}"
    else:
        scale = max(1.0, float(np.abs(want_f).max(initial=0)))
        assert np.allclose(got, want_f, rtol=1e-12, atol=1e-12 * scale), f"{what}: {got} != {want_f}"


@pytest.mark.parametrize("name", ALGEBRAS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_arithmetic_matches_exact_reference(host_lib, name, data):
    alg = load_algebra(name)
    ex = Exact(alg)
    d, r = ex.d, ex.r
    ints = st.lists(st.integers(-8, 8), min_size=d, max_size=d)
    x, y, g, acc0 = (data.draw(ints) for _ in range(4))
    m = data.draw(st.lists(st.integers(-8, 8), min_size=r, max_size=r))
    arr = (lambda v: np.array(v, dtype=np.float64))
    X, Y, G, M = arr(x), arr(y), arr(g), arr(m)
    out = np.zeros(d)
    fx, fy, fg = ([Fraction(v) for v in a] for a in (x, y, g))

    for fn, args, want in [
        ("mul", (X, Y), ex.mul(fx, fy)),
        ("mul_scheme", (X, Y), ex.mul(fx, fy)),
        ("grad_left", (Y, G), ex.grad_left(fy, fg)),
        ("grad_right", (X, G), ex.grad_right(fx, fg)),
        ("grad_left_scheme", (Y, G), ex.grad_left(fy, fg)),
        ("grad_right_scheme", (X, G), ex.grad_right(fx, fg)),
    ]:
        out[:] = np.nan
        host_lib.call(f"{name}_{fn}_host", args[0].ctypes.data, args[1].ctypes.data, out.ctypes.data)
        _check(out, want, ex.dyadic, f"{name}_{fn}")

    acc = arr(acc0)
    host_lib.call(f"{name}_mul_acc_host", X.ctypes.data, Y.ctypes.data, acc.ctypes.data)
    _check(acc, [a + b for a, b in zip(acc0, ex.mul(fx, fy))], ex.dyadic, f"{name}_mul_acc")

    pre = np.zeros(r)
    for P in "UVW":
        pre[:] = np.nan
        host_lib.call(f"{name}_premap_{P}_host", X.ctypes.data, pre.ctypes.data)
        _check(pre, ex.premap(P, fx), ex.dyadic, f"{name}_premap_{P}")
        out[:] = np.nan
        host_lib.call(f"{name}_postmap_{P}_host", M.ctypes.data, out.ctypes.data)
        _check(out, ex.postmap(P, [Fraction(v) for v in m]), ex.dyadic, f"{name}_postmap_{P}")


# ------------------------------------------------------------------------------- conversions
def _bits_f32(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


def test_half_conversions_bit_exact(host_lib):
    h = np.arange(65536, dtype=np.uint16)
    out = np.zeros(65536, dtype=np.float32)
    host_lib.call("an_host_f16_to_f32", h.ctypes.data, out.ctypes.data, h.size)
    want = h.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(out), nan)
    assert np.array_equal(_bits_f32(out)[~nan], _bits_f32(want)[~nan])

    rng = np.random.default_rng(0)
    f = np.concatenate([
        rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        want[~nan],                                        # every half value
        (want[~nan].astype(np.float64) * (1 + 2.0**-11)).astype(np.float32),   # ties and near ties
        (want[~nan].astype(np.float64) * (1 - 2.0**-11)).astype(np.float32),
        np.array([65504, 65519.99, 65520, 65536, 1e30, -1e30, np.inf, -np.inf, np.nan, 2.0**-25, 2.0**-26,
                  3 * 2.0**-26, 2.0**-24 * 1.5, -0.0, 0.0], dtype=np.float32),
    ])
    hb = np.zeros(f.size, dtype=np.uint16)
    with np.errstate(over="ignore", invalid="ignore"):
        host_lib.call("an_host_f32_to_f16", f.ctypes.data, hb.ctypes.data, f.size)
        want_h = f.astype(np.float16)
    nan = np.isnan(want_h)
    assert np.array_equal(np.isnan(hb.view(np.float16)), nan)
    assert np.array_equal(hb[~nan], want_h.view(np.uint16)[~nan])


def test_bfloat16_conversions_bit_exact(host_lib):
    rng = np.random.default_rng(1)
    f = np.concatenate([rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                        np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 3.3895314e38, 1e-40], dtype=np.float32)])
    b = np.zeros(f.size, dtype=np.uint16)
    host_lib.call("an_host_f32_to_bf16", f.ctypes.data, b.ctypes.data, f.size)
    want = torch.from_numpy(f).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(f)
    assert np.array_equal(b[~nan], want[~nan])
    back = np.zeros(f.size, dtype=np.float32)
    host_lib.call("an_host_bf16_to_f32", b.ctypes.data, back.ctypes.data, f.size)
    assert np.all(np.isnan(back[nan]))
    ref = torch.from_numpy(b.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
    assert np.array_equal(_bits_f32(back)[~nan], _bits_f32(ref)[~nan])


# ------------------------------------------------------------------------ kernels through the shim
def _tol(dtype: torch.dtype):
    return {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]


def assert_close_scaled(got: torch.Tensor, want: torch.Tensor, what: str):
    """|got - want| <= tol * max(1, max |want|), tol about two units in the last place of the storage type."""
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    g, w = got.double(), want.double()
    scale = max(1.0, float(w.abs().max()) if w.numel() else 1.0)
    err = float((g - w).abs().max()) if w.numel() else 0.0
    assert err <= _tol(got.dtype) * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


def _rand(shape, dtype, gen):
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


def _p(t):
    return 0 if t is None else t.data_ptr()


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("s", ["f32", "f64", "f16", "bf16"])
def test_elementwise_kernels_through_shim(host_lib, name, s):
    alg = load_algebra(name)
    d, r, dtype = alg.dim, alg.rank, DTYPES[s]
    gen = torch.Generator().manual_seed(hash((name, s)) % 2**31)
    n, grid, block = 37, 3, 5                       # grid-stride: 15 threads cover 37 elements
    x, y, g = (_rand((n, d), dtype, gen) for _ in range(3))
    z = torch.full_like(x, float("nan"))
    host_lib.call(f"{name}_mul_fwd_{s}_host", grid, block, _p(x), _p(y), _p(z), n)
    assert_close_scaled(z, reference.mul(alg, x, y), f"{name}_mul_fwd_{s}")
    gx, gy = torch.full_like(x, float("nan")), torch.full_like(y, float("nan"))
    host_lib.call(f"{name}_mul_bwd_{s}_host", grid, block, _p(x), _p(y), _p(g), _p(gx), _p(gy), n)
    rgx, rgy = reference.mul_backward(alg, x, y, g)
    assert_close_scaled(gx, rgx, f"{name}_mul_bwd_{s} gx")
    assert_close_scaled(gy, rgy, f"{name}_mul_bwd_{s} gy")
    gx2 = torch.full_like(x, float("nan"))
    host_lib.call(f"{name}_mul_bwd_{s}_host", grid, block, _p(x), _p(y), _p(g), _p(gx2), 0, n)  # gy not wanted
    assert torch.equal(gx2, gx)
    if s == "f64":
        return
    for P in "UVW":
        o = torch.full((r, n), float("nan"), dtype=dtype)
        host_lib.call(f"{name}_premap_{P}_{s}_host", grid, block, _p(x), _p(o), n)
        assert_close_scaled(o, reference.premap(alg, P, x), f"{name}_premap_{P}_{s}")
        m = _rand((r, 5, 7), dtype, gen)
        bias = _rand((7, d), dtype, gen)
        for b in (None, bias):
            out = torch.full((5, 7, d), float("nan"), dtype=dtype)
            host_lib.call(f"{name}_postmap_{P}_{s}_host", grid, block, _p(m), _p(b), _p(out), 35, 7)
            assert_close_scaled(out, reference.postmap(alg, P, m, b), f"{name}_postmap_{P}_{s} bias={b is not None}")


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("s", ["f32", "f16", "bf16"])
def test_gemv_lanes_through_shim(host_lib, name, s):
    alg = load_algebra(name)
    d, dtype = alg.dim, DTYPES[s]
    tiles = _launch.table(alg).tiles
    gen = torch.Generator().manual_seed(hash((name, s, "gemv")) % 2**31)
    out = 5
    for inn in (37, 64):                         # 37: rows not 16-byte aligned for most d (element loads)
        w = _rand((out, inn, d), dtype, gen)
        bias = _rand((out, d), dtype, gen)
        for tile in tiles:
            for batch in sorted({tile, max(1, tile - 1), tile + 1}):
                x = _rand((batch, inn, d), dtype, gen)
                for splits, b in ((1, bias), (2, None), (8, bias)):
                    y = torch.full((batch, out, d), float("nan"), dtype=dtype)
                    host_lib.call(f"{name}_gemv_{s}_b{tile}_host", _p(w), _p(x), _p(b), _p(y), out, inn, batch,
                                  splits)
                    assert_close_scaled(y, reference.gemv(alg, w, x, b),
                                        f"{name}_gemv_{s}_b{tile} in={inn} batch={batch} splits={splits}")


def random_bsr(out: int, inn: int, density: float, gen: torch.Generator, empty_row: int | None = None):
    mask = torch.rand(out, inn, generator=gen) < density
    if empty_row is not None:
        mask[empty_row] = False
    crow = torch.zeros(out + 1, dtype=torch.int64)
    crow[1:] = mask.sum(1).cumsum(0)
    col = mask.nonzero()[:, 1].contiguous()
    return crow, col


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("s", ["f32", "f16", "bf16"])
def test_bsr_lanes_through_shim(host_lib, name, s):
    alg = load_algebra(name)
    d, dtype = alg.dim, DTYPES[s]
    gen = torch.Generator().manual_seed(hash((name, s, "bsr")) % 2**31)
    out, inn = 6, 70
    crow, col = random_bsr(out, inn, 0.6, gen, empty_row=2)
    values = _rand((col.numel(), d), dtype, gen)
    bias = _rand((out, d), dtype, gen)
    for tile in _launch.table(alg).tiles:
        for batch in sorted({1, tile, tile + 3}):
            x = _rand((batch, inn, d), dtype, gen)
            for b in (None, bias):
                y = torch.full((batch, out, d), float("nan"), dtype=dtype)
                host_lib.call(f"{name}_bsr_{s}_b{tile}_host", _p(crow), _p(col), _p(values), _p(x), _p(b), _p(y),
                              out, inn, batch)
                assert_close_scaled(y, reference.bsr_linear(alg, crow, col, values, x, b),
                                    f"{name}_bsr_{s}_b{tile} batch={batch}")


# ----------------------------------------------------------------------- the launch glue, on the host
@pytest.fixture
def host_backend(host_lib, monkeypatch):
    be = HostBackend(host_lib)
    monkeypatch.setattr(_backend, "get_backend", lambda: be)
    monkeypatch.setattr(_launch, "sm_count", lambda device: 2)
    return be


@pytest.mark.parametrize("name", ALGEBRAS)
def test_launch_glue_drives_the_kernels(host_backend, name):
    alg = load_algebra(name)
    d, r = alg.dim, alg.rank
    gen = torch.Generator().manual_seed(7)
    x, y, g = (torch.randn(3, 11, d, generator=gen) for _ in range(3))
    assert_close_scaled(_launch.mul_fwd(alg, x, y), reference.mul(alg, x, y), "mul_fwd")
    for got, want in zip(_launch.mul_bwd(alg, x, y, g), reference.mul_backward(alg, x, y, g)):
        assert_close_scaled(got, want, "mul_bwd")
    for P in "UVW":
        m = _launch.premap(alg, P, x)
        assert m.shape == (r, 3, 11)
        assert_close_scaled(m, reference.premap(alg, P, x), f"premap {P}")
        bias = torch.randn(11, d, generator=gen)
        assert_close_scaled(_launch.postmap(alg, P, m, bias), reference.postmap(alg, P, m, bias), f"postmap {P}")

    tiles = _launch.table(alg).tiles
    for out, inn in ((3, 300), (40, 33)):       # few long rows (split across warps) / many short rows
        w = torch.randn(out, inn, d, generator=gen)
        bias = torch.randn(out, d, generator=gen)
        for batch in (1, 3, tiles[-1] + 2):
            xb = torch.randn(batch, inn, d, generator=gen)
            host_backend.launches.clear()
            got = _launch.gemv(alg, w, xb, bias)
            assert_close_scaled(got, reference.gemv(alg, w, xb, bias), f"gemv out={out} in={inn} batch={batch}")
            (kname, grid, block, args), = host_backend.launches
            tile, splits = int(kname.rsplit("_b", 1)[1]), args[-1]
            assert tile == _launch.pick_tile(alg, batch)
            row_groups = -(-out // (block[0] // 32 // splits))
            assert grid[0] == min(row_groups, 2 * 4) and grid[1] * tile >= batch   # persistent: <= resident blocks
        crow, col = random_bsr(out, inn, 0.3, gen)
        values = torch.randn(col.numel(), d, generator=gen)
        xb = torch.randn(5, inn, d, generator=gen)
        assert_close_scaled(_launch.bsr(alg, crow, col, values, xb, bias),
                            reference.bsr_linear(alg, crow, col, values, xb, bias), "bsr")
    assert _launch.pick_splits(alg, 3, 300, None) > 1        # few rows: several warps per row
    assert _launch.pick_splits(alg, 10_000, 300, None) == 1
