"""Scheme search: Wedderburn split, matrix units, ALS + rounding, find_scheme (exact results only)."""
from __future__ import annotations

import itertools
import re
import time
from fractions import Fraction as F

import numpy as np
import pytest

from codegen.exact import change_basis as transform_tensor
from codegen.exact import fraction_array as as_fraction_tensor
from codegen.exact import inverse, matrix_tensor as standard_matrix_tensor, product, rank, unit
from codegen.exact.simple import matrix_unit_basis
from codegen.exact.wedderburn import central_idempotents, split_algebra
from codegen.schemes import Scheme, change_basis, naive
from codegen.search import find_scheme
from codegen.search.als import als_search
from codegen.search.bounds import lower_bound


# ------------------------------------------------------------------------------------------------
# algebras, written from their multiplication tables (independent of algebra_spec)
# ------------------------------------------------------------------------------------------------
def _zeros(d):
    T = np.empty((d, d, d), dtype=object)
    T.reshape(-1)[:] = [F(0)] * d ** 3
    return T


def _two(sq):  # (1, j) with j^2 = sq
    T = _zeros(2)
    T[0, 0, 0] = T[0, 1, 1] = T[1, 0, 1] = F(1)
    T[1, 1, 0] = F(sq)
    return T


def complex_():
    return _two(-1)


def split_complex():
    return _two(1)


def dual():
    return _two(0)


def quaternions():
    T = _zeros(4)
    for i in range(4):
        T[0, i, i] = T[i, 0, i] = F(1)
    for a in (1, 2, 3):
        T[a, a, 0] = F(-1)
    for a, b, c in ((1, 2, 3), (2, 3, 1), (3, 1, 2)):
        T[a, b, c] = F(1)
        T[b, a, c] = F(-1)
    return T


def cross3():
    T = _zeros(3)
    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        T[a, b, c] = F(1)
        T[b, a, c] = F(-1)
    return T


def m2r():
    return standard_matrix_tensor(2)


def s3_group_algebra():
    """R[S3]: basis = the six permutations of {0,1,2}, product = composition (p*q)(i) = p(q(i))."""
    perms = list(itertools.permutations(range(3)))
    index = {p: n for n, p in enumerate(perms)}
    T = _zeros(6)
    for p in perms:
        for q in perms:
            T[index[p], index[q], index[tuple(p[q[i]] for i in range(3))]] = F(1)
    return T


def _same(a: Scheme, b: Scheme) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------------
# decomposition
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,dims", [(s3_group_algebra, [1, 1, 4]), (split_complex, [1, 1])])
def test_split_dimensions_and_block_diagonal(make, dims):
    T = make()
    sp = split_algebra(T)
    assert sp is not None and sp.dims == dims and sp.primitive
    Tn = transform_tensor(T, sp.P, sp.Pinv)
    assert np.all(sp.P.dot(sp.Pinv) == np.eye(T.shape[0], dtype=int))
    mask = np.zeros(Tn.shape, dtype=bool)
    for o, m, B in zip(sp.offsets, sp.dims, sp.blocks):
        mask[o:o + m, o:o + m, o:o + m] = True
        assert np.all(Tn[o:o + m, o:o + m, o:o + m] == B)
    assert all(v == 0 for v in Tn[~mask])
    # the central idempotents are orthogonal, central, and sum to 1
    one = unit(T)
    assert [sum(c) for c in zip(*sp.idempotents)] == one
    for a, e in enumerate(sp.idempotents):
        for b, f in enumerate(sp.idempotents):
            assert product(T, e, f) == (e if a == b else [F(0)] * len(e))


@pytest.mark.parametrize("make", [complex_, quaternions, m2r, dual, cross3])
def test_no_split(make):
    assert split_algebra(make()) is None


def test_dual_numbers_single_idempotent_despite_commutative_centre():
    idems, certified = central_idempotents(dual())
    assert idems == [[F(1), F(0)]] and certified
    assert central_idempotents(cross3()) is None  # no unit


def test_basis_change_formulas_are_exact():
    T = s3_group_algebra()
    P = as_fraction_tensor([[1 if i == j else (F(1, 2) if j == i + 1 else 0) for j in range(6)]
                            for i in range(6)])
    Pinv = inverse(P)
    Tn = transform_tensor(T, P, Pinv)
    back = change_basis(naive(Tn), Pinv, Pinv=P)     # a scheme of Tn mapped back to T's basis
    assert back.verify(T) and not naive(Tn).verify(T)
    assert change_basis(back, P, Pinv=Pinv).verify(Tn)


def test_matrix_units_for_the_s3_block_and_odd_m2_bases():
    block = split_algebra(s3_group_algebra()).blocks[2]
    P, Pinv, n = matrix_unit_basis(block)
    assert n == 2 and np.all(transform_tensor(block, P, Pinv) == standard_matrix_tensor(2))
    Q = as_fraction_tensor([[1, 2, 0, -1], [0, 1, 1, 0], [1, 0, 1, 3], [0, -2, 0, 1]])
    odd = transform_tensor(m2r(), Q)
    P, Pinv, n = matrix_unit_basis(odd)
    assert np.all(transform_tensor(odd, P, Pinv) == standard_matrix_tensor(2))
    assert matrix_unit_basis(quaternions(), max_tries=60) is None  # a division algebra over Q


def test_lower_bounds():
    assert lower_bound(complex_(), simple=True) == 3
    assert lower_bound(dual()) == 3
    assert lower_bound(m2r(), simple=True) == 7
    assert lower_bound(split_complex()) == 2
    assert lower_bound(cross3()) == 3  # flattening rank only (no unit)


# ------------------------------------------------------------------------------------------------
# ALS + rounding
# ------------------------------------------------------------------------------------------------
def test_als_finds_exact_low_rank_schemes_deterministically():
    for T, r in ((split_complex(), 2), (complex_(), 3)):
        a = als_search(T, r, budget_s=20, seed=3)
        assert a is not None and a.rank <= r and a.verify(T)
        assert _same(a, als_search(T, r, budget_s=20, seed=3))
    assert als_search(complex_(), 2, budget_s=1.0, seed=0) is None  # rank 2 does not exist


# ------------------------------------------------------------------------------------------------
# find_scheme
# ------------------------------------------------------------------------------------------------
def test_s3_reaches_rank_9_and_is_reproducible():
    T = s3_group_algebra()
    calls = []
    t0 = time.monotonic()
    s = find_scheme(T, budget_s=60, seed=0, progress=lambda *a: calls.append(a))
    assert time.monotonic() - t0 < 60
    assert s.U.shape == (9, 6) and s.verify(T)
    assert all(isinstance(x, F) for M in s for x in M.reshape(-1))
    assert "Wedderburn split 1+1+4" in s.provenance
    assert calls and all(isinstance(r, int) and isinstance(m, str) for r, _, m in calls)
    assert calls[-1][0] == 9
    assert _same(s, find_scheme(T, budget_s=60, seed=0))


@pytest.mark.parametrize("make,rank", [(split_complex, 2), (complex_, 3), (dual, 3), (m2r, 7)])
def test_small_algebras_reach_their_rank(make, rank):
    T = make()
    out = find_scheme(T, budget_s=30, seed=1)
    assert out.rank == rank and out.verify(T)
    assert _same(out, find_scheme(T, budget_s=30, seed=1))


def test_split_complex_needs_one_half_and_gf3_flips_find_it():
    T = split_complex()
    s = find_scheme(T, budget_s=30, seed=0)
    assert s.rank == 2 and "Wedderburn" in s.provenance
    assert any(x.denominator == 2 for M in s for x in M.reshape(-1))
    # without the split (a lone flip search over GF(3)) the rank is 2 as well
    from codegen.search.driver import _Search

    s, how = _Search(0, (3,), None).run(T, 30, 0, allow_split=False)
    assert s.rank == 2 and s.verify(T) and "GF(3)" in how


def test_matrix_unit_route_for_an_odd_m2_basis():
    # in this basis a GF(2)/GF(3) walk stalls at 9 for seconds; in matrix units it finds 7 at once (the search's
    # own matrix-unit path).  The structural route (matrix units, then Winograd) finds the same rank, but through
    # the basis change by 2310 its rounding error can be 10^7 times the naive product's (float32 results off by
    # 100 %), so the resolver drops it and the build would not use such a scheme (codegen.schemes.resolve)
    from codegen.schemes.resolve import GROWTH_LIMIT, structural_scheme

    Q = as_fraction_tensor([[1, 0, 1, 0], [0, 2310, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]])
    T = transform_tensor(m2r(), Q)
    t0 = time.monotonic()
    s = find_scheme(T, budget_s=30, seed=0)
    assert s.rank == 7 and s.verify(T) and s.provenance.startswith("matrix units M2")
    assert s.error_growth(T) > GROWTH_LIMIT
    assert structural_scheme(T).error_growth(T) <= GROWTH_LIMIT
    assert time.monotonic() - t0 < 10
    from codegen.search.driver import _Search

    s, how = _Search(0, (2, 3), None).run(T, 30, 0)
    assert s.rank == 7 and s.verify(T) and how.startswith("matrix units M2")


def test_start_scheme_and_trivial_cases():
    T = complex_()
    gauss = Scheme.of([[1, 0], [-1, 1], [1, 1]], [[1, 1], [1, 0], [0, 1]], [[1, 1], [0, 1], [-1, 0]])
    assert gauss.verify(T)
    s = find_scheme(T, budget_s=5, seed=0, start=gauss)
    assert s.rank == 3 and s.verify(T)
    one = as_fraction_tensor([[[5]]])
    s = find_scheme(one, budget_s=1)
    assert s.U.shape == (1, 1) and s.verify(one)


def cyclic_group_algebra(n):
    T = _zeros(n)
    for a in range(n):
        for b in range(n):
            T[a, b, (a + b) % n] = F(1)
    return T


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(-2, 2), min_size=9, max_size=9), st.integers(0, 10))
def test_split_and_rank_are_basis_independent(entries, seed):
    # Q[C3] = Q x Q(w): blocks 1 + 2, rank 1 + 3 = 4 (2n - d(n), docs/schemes.md) in any rational basis
    P = as_fraction_tensor([entries[0:3], entries[3:6], entries[6:9]])
    if rank(P) < 3:
        P = as_fraction_tensor([[1, 1, 0], [0, 1, 1], [1, 0, 2]])
    T = transform_tensor(cyclic_group_algebra(3), P)
    sp = split_algebra(T, seed=seed)
    assert sp is not None and sp.dims == [1, 2] and sp.primitive
    s = find_scheme(T, budget_s=20, seed=seed)
    assert s.rank == 4 and s.verify(T)


# ------------------------------------------------------------------------------------------------
# the CLI's campaigns: --seeds, --target, --log (resumable), the stored provenance
# ------------------------------------------------------------------------------------------------
SPLIT = ('from codegen.spec import algebra\n'
         'SplitC = algebra("SplitC", basis=["1", "j"], products={"j*j": "1"}, unit="1")\n')


def test_search_campaign_stores_provenance_and_resumes(tmp_path, capsys):
    import json

    from codegen.cli import main

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "split.py").write_text(SPLIT)
    log = tmp_path / "campaign.jsonl"
    args = ["search", "SplitC", "--spec-dir", str(specs), "--seeds", "3:6", "--budget", "5", "--target", "3",
            "--log", str(log)]
    assert main(args) == 0
    out = capsys.readouterr().out
    # the structural route already gives 2 (R x R) <= the target: nothing to search, nothing written
    assert "target 3 reached; stopping" in out and not log.exists()
    assert main(args[:-4] + ["--log", str(log)]) == 0        # no target: every seed runs once and is logged
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["seed"] for e in entries] == [3, 4, 5] and all(e["rank"] == 2 and e["budget"] == 5 for e in entries)
    capsys.readouterr()
    assert main(args[:-4] + ["--log", str(log)]) == 0        # run again: resumed, every seed skipped
    out = capsys.readouterr().out
    assert out.count("skipped") == 3 and len(log.read_text().splitlines()) == 3
    # the rank 2 is not better than the build's own (structural) 2, so nothing is stored
    assert not (specs / "schemes" / "SplitC.json").exists()


def test_search_stores_an_improvement_with_its_command(tmp_path, capsys):
    from codegen.cli import main
    from codegen.schemes import load_file

    specs = tmp_path / "specs"
    specs.mkdir()
    # the cross product: no unit, no structure the build recognises: the build's best is the naive 6
    (specs / "cross.py").write_text(
        'from codegen.spec import algebra\n'
        'X3 = algebra("X3", basis=["a", "b", "c"], products={"a*b": "c", "b*a": "-c", "b*c": "a", "c*b": "-a", '
        '"c*a": "b", "a*c": "-b"}, missing="zero")\n')
    assert main(["search", "X3", "--spec-dir", str(specs), "--seeds", "0:2", "--budget", "5", "--target", "5"]) == 0
    s = load_file(specs / "schemes" / "X3.json")
    assert s.rank == 5
    assert re.search(r"`python -m codegen search X3 --budget 5 --seed [01]` \(seed [01], budget 5s", s.provenance)
    assert "target 5 reached; stopping" in capsys.readouterr().out


def test_search_seed_range_must_be_valid(tmp_path, capsys):
    from codegen.cli import main

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "split.py").write_text(SPLIT)
    assert main(["search", "SplitC", "--spec-dir", str(specs), "--seeds", "5:5"]) == 2
    assert "--seeds 5:5: the range is empty" in capsys.readouterr().err
