"""Fuzzing the spec boundary: random product tables, coefficients, names and titles either build cleanly (and
the built `mul` and `mul_scheme` then reproduce the table that was meant) or raise SpecError, writing nothing.
No other exception, and never a generated file that does not load."""
from __future__ import annotations

import itertools
import math
import re
import keyword
import unicodedata
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from codegen.build import build
from codegen.spec import SpecError
from runtime import load_algebra

LETTERS = "abxyzAB_ΔλéЖ"
GOOD_COEFFS = [Fraction(1), Fraction(-1), Fraction(2), Fraction(1, 2), Fraction(-3, 4), Fraction(1, 3)]
BAD_COEFFS = ["0.5", "sqrt(2)", "pi", "I", "1/0", "x**", "$"]

identifier = st.builds(lambda a, b: a + b, st.sampled_from([c for c in LETTERS if c != "_"] + ["_"]),
                       st.text(alphabet=LETTERS + "0123456789", max_size=4))


def rarely(common, rare):
    """`common` seven times in eight, else `rare`."""
    return st.integers(0, 7).flatmap(lambda k: rare if k == 7 else common)


name = rarely(identifier, st.sampled_from(["", "2x", "a b", "class", "a\nb", "x" * 80, "é-é"]))
title = rarely(st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), max_size=20),
               st.sampled_from(["a\nb", "tab\there", "cr\r", "\x00"]))


def _term(coef, symbol: str | None) -> str:
    """One term as spec text: '3/2*a', '-b', '1/3' (symbol None: a multiple of the unit)."""
    text = coef if isinstance(coef, str) else str(coef)
    if symbol is None:
        return f"({text})"
    return f"({text})*{symbol}"


@st.composite
def specs(draw):
    """(source text of a spec file, the meant table or None when the spec must be refused, algebra name)."""
    d = draw(st.integers(1, 3))
    basis = draw(st.lists(rarely(identifier, st.sampled_from(["ﬁ", "ℌ", "a", "1"])), min_size=d, max_size=d))
    with_unit = draw(st.booleans())
    if with_unit:
        basis[0] = "1"
    unit = "1" if with_unit else None
    must_fail = "1" in basis[1 if with_unit else 0:]     # only the unit may be called "1"
    must_fail |= len(set(basis)) < d or any(unicodedata.normalize("NFKC", b) != b for b in basis)
    nm, ttl = draw(name), draw(title)
    must_fail |= not (nm.isidentifier() and not keyword.iskeyword(nm) and len(nm) <= 64)
    must_fail |= any(not c.isprintable() for c in ttl)
    missing = draw(rarely(st.just("zero"), st.just("error")))
    T = np.zeros((d, d, d), dtype=object)
    T[...] = Fraction(0)
    products = {}
    listed = set()
    for i, j in itertools.product(range(d), range(d)):
        implied = with_unit and (i == 0 or j == 0)
        if implied and draw(st.integers(0, 3)):          # usually leave the unit's products implied
            T[i, j, j if i == 0 else i] = Fraction(1)
            continue
        if not draw(st.integers(0, 2)):                  # leave the product out
            if missing == "error" and not implied:
                must_fail = True
            elif implied:
                T[i, j, j if i == 0 else i] = Fraction(1)
            continue
        terms = []
        for k in draw(st.lists(st.integers(-1 if with_unit else 0, d - 1), max_size=3)):
            coef = draw(rarely(st.sampled_from(GOOD_COEFFS), st.sampled_from(BAD_COEFFS)))
            if isinstance(coef, str):
                must_fail = True
            else:
                T[i, j, 0 if k == -1 else k] += coef
            terms.append(_term(coef, None if k == -1 else basis[k]))
        products[f"{basis[i]}*{basis[j]}"] = " + ".join(terms) or "0"
        listed.add((i, j))
    if all(v == 0 for v in T.reshape(-1)):
        must_fail = True                                 # the zero algebra is refused
    source = (f"from codegen.spec import algebra\n"
              f"X = algebra({nm!r}, basis={basis!r}, products={products!r}, unit={unit!r}, missing={missing!r}, "
              f"title={ttl!r})\n")
    return source, None if must_fail else T, nm


_counter = itertools.count()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_random_specs_build_cleanly_or_raise_spec_error(tmp_path_factory, spec):
    source, table, nm = spec
    root = tmp_path_factory.getbasetemp() / f"fuzz{next(_counter)}"
    spec_dir, out = root / "specs", root / "out"
    spec_dir.mkdir(parents=True)
    (spec_dir / "fuzz.py").write_text(source, encoding="utf-8")
    try:
        build(spec_dir, out)
    except SpecError as e:
        event("refused: " + str(e).split(": ")[-1][:40])
        assert "\n" not in str(e)
        assert not out.exists(), "a refused spec wrote files"
        # a spec meant to build may still be refused for a reason the generator knows better (a false claim
        # cannot occur here; unit products that contradict the declared unit can)
        if table is not None:
            assert "unit" in str(e), f"a valid spec was refused: {e}\n{source}"
        return
    assert table is not None, f"an invalid spec built:\n{source}"
    event("built")
    A = load_algebra(nm, out)
    d = A.dim
    eye = torch.eye(d, dtype=torch.float64)
    got = A.mul(eye[:, None, :].expand(d, d, d), eye[None, :, :].expand(d, d, d))       # (i, j, k)
    want = torch.tensor(table.astype(float), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
    got_scheme = A.mul_scheme(eye[:, None, :].expand(d, d, d), eye[None, :, :].expand(d, d, d))
    torch.testing.assert_close(got_scheme, want, rtol=1e-12, atol=1e-12)
    for f in (out / nm).glob("*.py"):
        compile(f.read_bytes(), str(f), "exec")


# ------------------------------------------------------------------------ coefficient magnitudes and denominators
def magnitude():
    """An exact coefficient sign * a * 10^e1 / (b * 10^e2) with e1, e2 in [0, 400]: from 10^-400 to 10^400, with
    numerators and denominators far beyond 2^53 (mostly near the float32 range's ends, where it matters)."""
    exps = st.one_of(st.integers(0, 45), st.integers(0, 400))
    return st.builds(lambda s, a, e1, b, e2: Fraction(s * a * 10 ** e1, b * 10 ** e2),
                     st.sampled_from([1, -1]), st.integers(1, 2 ** 70), exps, st.integers(1, 99), exps)


def _in_range(c: Fraction) -> bool:
    from codegen.exact.numbers import FLOAT32_MAX, FLOAT32_MIN_NORMAL

    return c == 0 or FLOAT32_MIN_NORMAL <= abs(c) <= FLOAT32_MAX


LITERAL = re.compile(r"(?<![\w.])(\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)")
INT_IN_T = re.compile(r"\bT\((-?\d+)\)")


def audit_literals(folder: Path) -> None:
    """Every number in the generated arithmetic is one the kernel's type holds: integer constants T(n) exact in
    float32 (|n| <= 2^24; larger ones print as float literals), float literals finite; no inf or nan."""
    for path in [*folder.glob("*.cpp"), *folder.glob("*.cu")]:
        text = path.read_text()
        assert not re.search(r"T\(\s*-?(inf|nan)", text), path
        for n in INT_IN_T.findall(text):
            assert abs(int(n)) <= 2 ** 24, f"{path.name}: integer constant T({n}) is not exact in float"
        for lit in LITERAL.findall(text):
            assert math.isfinite(float(lit)), f"{path.name}: literal {lit}"
    code = [line for line in (folder / "ops.py").read_text().splitlines() if re.match(r"\s+\w+ = ", line)]
    for line in code:
        assert not re.search(r"(?<![\w.])(inf|nan)(?![\w])", line), line
        for lit in LITERAL.findall(line):
            assert math.isfinite(float(lit)), line


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(coefs=st.lists(magnitude(), min_size=3, max_size=3))
def test_coefficient_magnitudes_build_exactly_or_are_refused(tmp_path_factory, coefs):
    """i*i = c0 + c1 i, i*j = c2 j (and j*i, j*j fixed): built and exact in every emitted file, or refused with
    the range message when a coefficient lies outside float32's normal range."""
    c0, c1, c2 = coefs
    root = tmp_path_factory.getbasetemp() / f"mag{next(_counter)}"
    spec_dir, out = root / "specs", root / "out"
    spec_dir.mkdir(parents=True)
    products = {"i*i": f"({c0}) + ({c1})*i", "i*j": f"({c2})*j", "j*i": "j", "j*j": "-1"}
    (spec_dir / "m.py").write_text("from codegen.spec import algebra\n"
                                   f"M = algebra('M', basis=['1', 'i', 'j'], products={products!r}, unit='1')\n")
    fits = all(_in_range(c) for c in coefs)
    try:
        build(spec_dir, out)
    except SpecError as e:
        message = str(e)
        assert "\n" not in message and not out.exists()
        assert ("too large" in message or "too small" in message) and "float32" in message, message
        # a table that fits may still be refused for a constant derived from it (a scheme's, a fold block's)
        assert not fits or "derived" in message or "scheme" in message or "fold" in message, message
        event("refused")
        return
    assert fits, f"built with a coefficient out of range: {coefs}"
    event("built")
    audit_literals(out / "M")
    A = load_algebra("M", out)
    T = np.zeros((3, 3, 3), dtype=object)
    T[...] = Fraction(0)
    for (i, j), terms in {(0, 0): {0: 1}, (0, 1): {1: 1}, (0, 2): {2: 1}, (1, 0): {1: 1}, (2, 0): {2: 1},
                          (1, 1): {0: c0, 1: c1}, (1, 2): {2: c2}, (2, 1): {2: 1}, (2, 2): {0: -1}}.items():
        for k, c in terms.items():
            T[i, j, k] = Fraction(c)
    eye = torch.eye(3, dtype=torch.float64)
    x, y = eye[:, None, :].expand(3, 3, 3), eye[None, :, :].expand(3, 3, 3)
    want = torch.tensor([[[float(T[i, j, k]) for k in range(3)] for j in range(3)] for i in range(3)],
                        dtype=torch.float64)
    assert torch.equal(A.mul(x, y), want)                      # each constant correctly rounded, exactly once
    scale = want.abs().amax(-1, keepdim=True).clamp_min(1.0)
    assert ((A.mul_scheme(x, y) - want).abs() <= 2 ** -40 * scale).all()
