"""The generated CUDA sources' arithmetic, compiled for the CPU (g++, the host build) and checked exactly.

* the `__host__ __device__` arithmetic of every algebra and scheme (naive product, scheme product,
  multiply-accumulate, both gradients naive and through the permuted scheme, the six scheme maps) against
  the exact structure constants, with hypothesis (small integers: every result is exact in double);
* the half / bfloat16 conversions against numpy / torch, bit for bit.

The kernels themselves run under the CUDA emulation in tests/test_cuda_emulation.py.  One shared library
for all nine algebras is built per session (g++ -O0, a few seconds).
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
from cuda_emulation.host import HostLibrary, find_compiler

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O", "RandH", "RandM4R"]
REQUIRE = os.environ.get("ALGEBRANETS_REQUIRE_NVCC", "") not in ("", "0")


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
