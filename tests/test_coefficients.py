"""Coefficients of every size reach every generated file exactly as its arithmetic needs them, or the build refuses.

Specs with coefficients from 10^-37 to 3*10^37, numerators and denominators beyond 2^53 (and beyond 2^24, where
float32 stops being exact) are built; then the torch products (`ops.py`), the CPU kernels (every variant,
float64 and float32) and the CUDA source (compiled for the host with the test shim) are compared with the exact
product computed in Fractions from the same float inputs.  Coefficients whose float32 value would overflow or be
subnormal (|c| > 3.4e38 or 0 < |c| < 2^-126, up to 10^400 and 10^-400) are refused by the build with a message
naming the algebra, the product and the range, and nothing is written.
"""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from codegen.build import build
from codegen.spec import SpecError
from runtime import load_algebra
from runtime.kernels import cpu
from runtime.kernels.compiler import find_compiler

SPEC = '''
from codegen.spec import algebra
Big = algebra("Big", basis=["1", "i", "j"], title="large coefficients", unit="1",
              products={"i*i": "10**20", "i*j": "(2**60 + 1)/7*j", "j*i": "-1/3**30*i", "j*j": "3*10**37*i - 1"})
Tiny = algebra("Tiny", basis=["i", "j"], title="small coefficients",
               products={"i*i": "10**-37*j", "i*j": "12345678901234567/10**30*i", "j*i": "16777217*j",
                         "j*j": "1/16777217*i"})
Split = algebra("Split", basis=["1", "i"], title="scaled split-complex (a basis-change scheme)", unit="1",
                products={"i*i": "10**20"})
'''
NAMES = ["Big", "Tiny", "Split"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    specs, out = tmp_path_factory.mktemp("specs"), tmp_path_factory.mktemp("gen")
    (specs / "magnitudes.py").write_text(SPEC)
    build(specs, out)
    return out


def exact_structure(alg) -> list[tuple[int, int, int, Fraction]]:
    man = json.loads((alg.path / "manifest.json").read_text())
    return [(i, j, k, Fraction(v)) for i, j, k, v in man["structure"]]


def exact_linear(T, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y[b, o, k] = sum_i (w[o, i] * x[b, i])_k in Fractions from the float inputs: (value, scale), where scale is
    the sum of the terms' magnitudes (the size rounding errors are measured against)."""
    B, I, d = x.shape
    O = w.shape[0]
    y = np.zeros((B, O, d))
    scale = np.zeros((B, O, d))
    for b in range(B):
        for o in range(O):
            acc, mag = [Fraction(0)] * d, [Fraction(0)] * d
            for i in range(I):
                for p, q, k, c in T:
                    t = c * Fraction(float(w[o, i, p])) * Fraction(float(x[b, i, q]))
                    acc[k] += t
                    mag[k] += abs(t)
            y[b, o] = [float(v) for v in acc]
            scale[b, o] = [float(v) for v in mag]
    return y, scale


def assert_within_rounding(got, want, scale, eps: float, what: str):
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    err = np.abs(got - want)
    bound = 8 * eps * scale + 1e-300
    assert np.all(err <= bound), f"{what}: worst error {np.max(err / bound) * 8:.3g} eps of the terms' size"


def test_structure_is_stored_exactly(built):
    want = {"Big": {(1, 1, 0): Fraction(10**20), (1, 2, 2): Fraction(2**60 + 1, 7), (2, 1, 1): Fraction(-1, 3**30),
                    (2, 2, 1): Fraction(3 * 10**37), (2, 2, 0): Fraction(-1)},
            "Tiny": {(0, 0, 1): Fraction(1, 10**37), (0, 1, 0): Fraction(12345678901234567, 10**30),
                     (1, 0, 1): Fraction(16777217), (1, 1, 0): Fraction(1, 16777217)}}
    for name, entries in want.items():
        got = {(i, j, k): c for i, j, k, c in exact_structure(load_algebra(name, built))}
        for key, c in entries.items():
            assert got[key] == c, (name, key)


@pytest.mark.parametrize("name", NAMES)
def test_torch_products_match_exact(built, name):
    alg = load_algebra(name, built)
    T = exact_structure(alg)
    gen = torch.Generator().manual_seed(3)
    x, y = (torch.randn(4, alg.dim, generator=gen, dtype=torch.float64) for _ in range(2))
    for dtype, eps in ((torch.float64, 2.0**-52), (torch.float32, 2.0**-23)):
        xs, ys = x.to(dtype), y.to(dtype)
        want = np.diagonal(exact_pairwise(T, xs, ys), axis1=1, axis2=2)
        scale = np.diagonal(exact_pairwise(T, xs, ys, magnitude=True), axis1=1, axis2=2)
        for fn in (alg.mul, alg.mul_scheme):
            assert_within_rounding(fn(xs, ys).double().T, want, scale, eps, f"{name}.{fn.__name__} {dtype}")


def exact_pairwise(T, x: torch.Tensor, y: torch.Tensor, magnitude: bool = False) -> np.ndarray:
    """(d, B, B): component k of x[a] * y[b] computed exactly (or the sum of its terms' magnitudes)."""
    B, d = x.shape
    out = np.zeros((d, B, B))
    for a in range(B):
        for b in range(B):
            acc = [Fraction(0)] * d
            for i, j, k, c in T:
                t = c * Fraction(float(x[a, i])) * Fraction(float(y[b, j]))
                acc[k] += abs(t) if magnitude else t
            out[:, a, b] = [float(v) for v in acc]
    return out


@pytest.mark.skipif(cpu.find_compiler() is None, reason="needs a C++ compiler")
@pytest.mark.parametrize("name", NAMES)
def test_cpu_kernels_match_exact(built, name):
    alg = load_algebra(name, built)
    T = exact_structure(alg)
    d = alg.dim
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(3, 5, d, generator=gen, dtype=torch.float64)
    for batch in (1, 9):
        x = torch.randn(batch, 5 * d, generator=gen, dtype=torch.float64)
        want, scale = exact_linear(T, w.numpy(), x.reshape(batch, 5, d).numpy())
        for variant in (None, "small", "lanes_naive", "lanes_scheme"):
            try:
                y = cpu.dense(alg, w, x, variant=variant)
            except RuntimeError as e:
                assert variant == "lanes_scheme" and "not available" in str(e)
                continue
            assert_within_rounding(y, want, scale, 2.0**-52, f"{name} kernel {variant} float64 batch {batch}")
        w32, x32 = w.float(), x.float()
        want32, scale32 = exact_linear(T, w32.double().numpy(), x32.double().reshape(batch, 5, d).numpy())
        assert_within_rounding(cpu.dense(alg, w32, x32), want32, scale32, 2.0**-23, f"{name} kernel float32")


@pytest.mark.skipif(find_compiler() is None, reason="needs a C++ compiler")
def test_cuda_source_matches_exact(built, tmp_path):
    """The .cu arithmetic (naive and scheme product, scheme maps) compiled for the host, in double."""
    from cuda_emulation.host import HostLibrary

    algs = [load_algebra(n, built) for n in NAMES]
    lib = HostLibrary.build(algs, tmp_path)
    assert "warning" not in lib.warnings, lib.warnings[:2000]
    gen = torch.Generator().manual_seed(7)
    for alg in algs:
        T = exact_structure(alg)
        x, y = (torch.randn(1, alg.dim, generator=gen, dtype=torch.float64) for _ in range(2))
        want, scale = exact_pairwise(T, x, y)[:, 0, 0], exact_pairwise(T, x, y, magnitude=True)[:, 0, 0]
        X, Y = x[0].numpy().copy(), y[0].numpy().copy()
        for fn in ("mul", "mul_scheme"):
            out = np.full(alg.dim, np.nan)
            lib.call(f"{alg.name}_{fn}_host", X.ctypes.data, Y.ctypes.data, out.ctypes.data)
            assert_within_rounding(out, want, scale, 2.0**-52, f"{alg.name}_{fn} (CUDA source, host build)")


@pytest.mark.parametrize("value, size", [("10**39", "too large"), ("-10**45", "too large"),
                                         ("10**400", "too large"), ("1/10**39", "too small"),
                                         ("-3/10**400", "too small"), ("2**128", "too large"),
                                         ("1/2**127", "too small")])
def test_out_of_range_coefficients_are_refused(tmp_path, value, size):
    specs, out = tmp_path / "specs", tmp_path / "out"
    specs.mkdir()
    (specs / "bad.py").write_text(f'from codegen.spec import algebra\n'
                                  f'Bad = algebra("Bad", basis=["1", "i"], unit="1", products={{"i*i": "{value}"}})\n')
    with pytest.raises(SpecError) as info:
        build(specs, out)
    message = str(info.value)
    assert "Bad" in message and "bad.py" in message and "i*i" in message and size in message
    assert "float32" in message and len(message) < 600
    assert not out.exists()


@pytest.mark.parametrize("value", ["10**400/10**399", "2**127", "1/2**126", "3*10**38", "10**-38*2"])
def test_in_range_coefficients_with_huge_parts_build(tmp_path, value):
    specs, out = tmp_path / "specs", tmp_path / "out"
    specs.mkdir()
    (specs / "ok.py").write_text(f'from codegen.spec import algebra\n'
                                 f'Ok = algebra("Ok", basis=["1", "i"], unit="1", products={{"i*i": "{value}"}})\n')
    build(specs, out)
    alg = load_algebra("Ok", out)
    c = Fraction(json.loads((out / "Ok" / "manifest.json").read_text())["structure"][-1][-1])
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert alg.mul(x, x)[0, 0].item() == float(c) and np.isfinite(float(c))
