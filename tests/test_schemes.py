"""Bilinear schemes of the built-in algebras: target ranks, exact verification, composition, stored files,
addition counts and float32 accuracy."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from codegen import schemes as sch
from codegen.build import DEFAULT_SPEC_DIR, build
from codegen.spec.discover import discover
from codegen import exact
from codegen.schemes import known
from codegen.spec import SpecError, algebra, cayley_dickson, clifford, tensor
from codegen.schemes import SchemeResolver
from test_builders import shuffled
from runtime import load_algebra

O_STORED = json.loads((DEFAULT_SPEC_DIR / "schemes" / "O.json").read_text())
TARGETS = {"R": 1, "C": 3, "Dual": 3, "Cross3": 5, "H": 8, "M2R": 7, "M3R": 23, "M2C": 21, "M4R": 48,
           "O": O_STORED["rank"], "RandH": 10, "RandM4R": 59}      # the controls: naive (pairs with a product)


@pytest.fixture(scope="module")
def resolved():
    algebras = discover(DEFAULT_SPEC_DIR)
    resolver = SchemeResolver(algebras, DEFAULT_SPEC_DIR)
    return {name: (A, resolver.best(A)) for name, A in algebras.items()}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_rank_reached_and_verified_exactly(resolved, name):
    A, s = resolved[name]
    assert s.rank <= TARGETS[name], f"{name}: rank {s.rank} ({s.provenance})"
    assert s.verify(A.T)
    # independent exact check: sum_s U[s,i] V[s,j] W[s,k] entry by entry
    for i in range(A.dim):
        for j in range(A.dim):
            for k in range(A.dim):
                assert sum((s.U[t, i] * s.V[t, j] * s.W[t, k] for t in range(s.rank)), Fraction(0)) == A.T[i, j, k]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_runtime_exposes_the_scheme(resolved, name):
    A = load_algebra(name)
    _, s = resolved[name]
    assert A.rank == s.rank
    np.testing.assert_array_equal(A.scheme.U, np.array(s.U, dtype=float))
    T = np.einsum("si,sj,sk->ijk", A.scheme.U, A.scheme.V, A.scheme.W)
    np.testing.assert_allclose(T, A.structure, atol=1e-12)
    adds = A.scheme.additions
    assert set(adds) == {"naive", "optimised"}
    for part in ("weight", "activation", "post"):
        assert adds["optimised"][part] <= adds["naive"][part]


def test_composition_provenance(resolved):
    assert resolved["M2C"][1].provenance.startswith("composed: M2R (7) x C (3)")
    # M4R: the stored rank-48 scheme (imported, verified exactly) beats the composed Winograd x Winograd (49)
    assert resolved["M4R"][1].provenance.startswith("imported: Dumas-Pernet-Sedoglavic 2025")


def test_winograd_additions_at_most_15():
    M2R = load_algebra("M2R")
    assert sum(M2R.scheme.additions["optimised"].values()) <= 15


def test_naive_scheme_is_the_reference(resolved):
    for name, (A, _) in resolved.items():
        n = sch.naive(A.T)
        assert n.verify(A.T)
        assert n.rank == load_algebra(name).naive_multiplications


def test_stored_scheme_file_is_verified(tmp_path):
    specs = tmp_path / "specs"
    (specs / "schemes").mkdir(parents=True)
    (specs / "c.py").write_text('from codegen.spec import algebra\n'
                                'C2 = algebra("C2", basis=["1", "i"], products={"i*i": "-1"}, unit="1")\n')
    gauss = sch.Scheme.of([[1, 0], [-1, 1], [1, 1]], [[1, 1], [1, 0], [0, 1]], [[1, 1], [0, 1], [-1, 0]],
                          provenance="test")
    path = specs / "schemes" / "C2.json"
    sch.save_file(gauss, path, algebra="C2")
    built = build(specs, tmp_path / "out")
    assert built[0].scheme.rank == 3
    data = json.loads(path.read_text())
    data["W"][0][0] = "2"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=r"C2.json: algebra C2: stored scheme is wrong: it gives T\[0,0,0\]"):
        build(specs, tmp_path / "out")


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_float32_relative_error_of_scheme(name):
    """The scheme in float32 stays close to the float64 product (normwise relative error per element)."""
    A = load_algebra(name)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(4096, A.dim, generator=g, dtype=torch.float64)
    y = torch.randn(4096, A.dim, generator=g, dtype=torch.float64)
    ref = A.mul(x, y)
    got = A.mul_scheme(x.float(), y.float()).double()
    rel = ((got - ref).norm(dim=-1) / (x.norm(dim=-1) * y.norm(dim=-1))).max().item()
    assert rel < 1e-5, f"{name}: normwise relative error {rel:.2e}"


# ------------------------------------------------------------------------------------ every route competes
def candidates_of(A):
    return SchemeResolver({A.name: A}, None).candidates(A)


def test_bicomplex_tensor_reaches_6_through_the_structure():
    """tensor(C, C) is C x C: its structure (3 + 3) beats the builder's Kronecker composition (3 x 3)."""
    algebras = discover(DEFAULT_SPEC_DIR)
    A = tensor(algebras["C"], algebras["C"], name="BiC")
    cands = candidates_of(A)
    assert cands[0].scheme.rank == 6 and cands[0].route == "structural"
    assert cands[0].scheme.verify(A.T)
    assert {(c.route, c.scheme.rank) for c in cands} >= {("composed", 9), ("naive", 16)}
    assert [c.cost() for c in cands] == sorted(c.cost() for c in cands)


def test_clifford_2_2_gets_the_m4r_library_scheme():
    """Cl(2,2) = M4(R): the builder composes Winograd twice (49); the structural route reaches the stored 48."""
    A = clifford(2, 2)
    cands = candidates_of(A)
    assert cands[0].scheme.rank <= 48 and cands[0].scheme.verify(A.T)
    assert "Dumas-Pernet-Sedoglavic" in cands[0].scheme.provenance
    assert any(c.route == "composed" and c.scheme.rank == 49 for c in cands)


def test_stored_octonion_scheme_is_exact_and_documented(resolved):
    A, s = resolved["O"]
    assert s.rank == O_STORED["rank"] < 32
    stored = sch.from_json(O_STORED)
    assert stored.verify(A.T) and np.all(A.T == known.octonion_tensor())
    assert "python -m codegen search O" in O_STORED["provenance"]
    # the builder's own composition is still a candidate, and loses
    losers = SchemeResolver(discover(DEFAULT_SPEC_DIR), DEFAULT_SPEC_DIR).candidates(A)[1:]
    assert any(c.route == "composed" and c.scheme.rank == 32 for c in losers)


@pytest.mark.parametrize("seed", [3, 11])
def test_isomorphic_octonions_get_the_stored_rank(seed):
    """cayley_dickson(H) under other names, and the octonions typed in a shuffled signed basis."""
    H = discover(DEFAULT_SPEC_DIR)["H"]
    O2 = cayley_dickson(H, name="O2", generator="m")
    s = candidates_of(O2)[0].scheme
    assert s.rank == O_STORED["rank"] and s.verify(O2.T)
    T = shuffled(known.octonion_tensor(), seed, rational=False)
    X = algebra("Oshuf", basis=[f"u{i}" for i in range(8)], missing="zero",
                products={f"u{i}*u{j}": " + ".join(f"({exact.fraction_str(T[i, j, k])})*u{k}" for k in range(8)
                                                  if T[i, j, k] != 0)
                          for i in range(8) for j in range(8) if any(T[i, j, :] != 0)})
    best = candidates_of(X)[0]
    assert best.scheme.rank == O_STORED["rank"] and best.route == "structural" and best.scheme.verify(X.T)


def test_ties_go_to_fewer_additions_then_the_route_order(resolved):
    algebras = discover(DEFAULT_SPEC_DIR)
    resolver = SchemeResolver(algebras, DEFAULT_SPEC_DIR)
    # Dual: Toom-Cook (known, rank 3) costs 3 run-time additions, the plain products 1: the known scheme loses
    dual = resolver.candidates(algebras["Dual"])
    assert dual[0].route != "known" and dual[0].scheme.additions()[0] == 1
    assert any(c.route == "known" and c.scheme.rank == 3 for c in dual[1:])
    # M2R: the spec's Winograd and the known Winograd are the same scheme: the spec's (given) wins
    m2 = resolver.candidates(algebras["M2R"])
    assert m2[0].route == "given" and m2[1].route == "known" and m2[0].cost()[:-1] == m2[1].cost()[:-1]


def test_clifford_6_0_regroups_two_m2_factors_into_m4():
    """Cl(6,0) = M4(H): the builder's M2 (x) H (x) M2 composes to 7 x 8 x 7 = 392; regrouping the two M2 factors
    into M4 gives the library's 48 x 8 = 384 (the structural route is skipped at this dimension)."""
    A = clifford(6, 0)
    cands = candidates_of(A)
    assert A.dim == 64 and cands[0].scheme.rank == 384 and cands[0].scheme.verify(A.T)
    assert "regrouped tensor factors: M4 (48) x H (8)" in cands[0].scheme.provenance
    assert not any(c.route == "structural" for c in cands)
