"""The random-structure controls RandH and RandM4R (algebra_spec/random_control.py, codegen.spec.random_structure):
as many +-1 constants as H and M4R, nonsingular generic multiplications, deterministic builds, working layers."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

from codegen.spec import SpecError, random_structure
from runtime import load_algebra
from runtime.layers import AlgebraLinear

ROOT = Path(__file__).resolve().parents[1]
CONTROLS = {"RandH": "H", "RandM4R": "M4R"}


def exact_tensor(name: str) -> np.ndarray:
    """The structure tensor from the manifest's exact entries (object array of Fraction, zeros elsewhere)."""
    A = load_algebra(name)
    T = np.full((A.dim,) * 3, Fraction(0), dtype=object)
    for i, j, k, v in A.structure_exact:
        T[i, j, k] = Fraction(v)
    return T


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_nonzero_count_and_values_match_the_algebra_controlled(name):
    A, B = load_algebra(name), load_algebra(CONTROLS[name])
    assert A.dim == B.dim
    T, TB = exact_tensor(name), exact_tensor(CONTROLS[name])
    assert np.count_nonzero(T) == np.count_nonzero(TB) == {"RandH": 16, "RandM4R": 64}[name]
    assert np.count_nonzero(A.structure) == np.count_nonzero(B.structure)
    assert {v for v in T.reshape(-1) if v} == {Fraction(1), Fraction(-1)}
    assert all(Fraction(v).denominator == 1 for _, _, _, v in A.structure_exact)
    np.testing.assert_array_equal(A.structure, np.array(T, dtype=float))
    assert not np.array_equal(A.structure, B.structure)
    # a product of two basis elements may have several components here (in H and M4R it has one), so the
    # naive product takes one multiplication per basis pair with a non-zero product, fewer than the constants
    pairs = {(i, j) for i, j, _, _ in A.structure_exact}
    assert A.naive_multiplications == len(pairs) == {"RandH": 10, "RandM4R": 59}[name]
    assert A.rank <= len(pairs)


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_generic_left_and_right_multiplications_are_nonsingular(name):
    T = exact_tensor(name)
    d = T.shape[0]
    rng = random.Random(12345)
    for _ in range(2):                           # fresh integer points; det is a nonzero polynomial in w
        w = [sympy.Integer(rng.randrange(-10 ** 6, 10 ** 6 + 1)) for _ in range(d)]
        L = sympy.Matrix(d, d, lambda k, j: sum(sympy.Rational(T[i, j, k]) * w[i] for i in range(d)))
        R = sympy.Matrix(d, d, lambda k, i: sum(sympy.Rational(T[i, j, k]) * w[j] for j in range(d)))
        assert L.det() != 0 and R.det() != 0


def test_the_controls_are_not_the_algebras_laws():
    """The build refutes the laws of H / M4R for the controls (they are controls, not algebras to use)."""
    for name in CONTROLS:
        props = load_algebra(name).properties
        assert props["associative"] is False and props["commutative"] is False


def test_random_structure_is_a_function_of_its_arguments():
    a = random_structure(4, 16, seed=0, name="A")
    b = random_structure(4, 16, seed=0, name="B")
    c = random_structure(4, 16, seed=1, name="C")
    assert (a.T == b.T).all() and not (a.T == c.T).all()
    assert a.T.tolist() == exact_tensor("RandH").tolist()         # what the spec file builds
    with pytest.raises(SpecError, match="nonzeros must lie in"):
        random_structure(4, 3, seed=0, name="Few")
    with pytest.raises(SpecError, match="seed must be an integer"):
        random_structure(4, 16, seed=0.5, name="Bad")


def test_build_is_byte_identical_across_processes(tmp_path):
    outs = []
    for hash_seed in ("0", "1"):
        out = tmp_path / f"gen{hash_seed}"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run([sys.executable, "-m", "codegen", "build", "--out", str(out), "--only", "RandH",
                               "--only", "RandM4R"], capture_output=True, text=True, cwd=ROOT, env=env)
        assert proc.returncode == 0, proc.stderr
        outs.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert outs[0] == outs[1]
    assert {"RandH/manifest.json", "RandM4R/RandM4R_cpu.cpp", "RandM4R/RandM4R.cu"} <= set(outs[0])


@pytest.mark.parametrize("method", ["block", "bilinear", "auto"])
def test_linear_layer_matches_structure_einsum(method):
    T = torch.tensor(np.array(exact_tensor("RandH"), dtype=float), dtype=torch.float64)
    lin = AlgebraLinear(5, 3, algebra="RandH", method=method, dtype=torch.float64)
    torch.nn.init.normal_(lin.weight)
    torch.nn.init.normal_(lin.bias)
    x = torch.randn(7, 5 * 4, dtype=torch.float64)
    expected = torch.einsum("abk,oia,nib->nok", T, lin.weight.detach(), x.reshape(7, 5, 4)) + lin.bias.detach()
    torch.testing.assert_close(lin(x), expected.reshape(7, 12), rtol=1e-12, atol=1e-12)
