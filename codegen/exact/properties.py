"""Exact property checks: associativity, commutativity, units, alternativity, Jacobi, zero divisors.

Every property is computed from the structure tensor, never trusted from the spec.  A refuted property
comes with a counterexample in words, e.g. "(e1*e1)*e2 = 0 but e1*(e1*e2) = -e2".

The multilinear laws are checked on basis elements: a trilinear identity holds for all elements iff it
holds on the basis, and a law quadratic in one argument (x(xy) = (xx)y) holds iff its polarisation does.
The O(d^5) contractions run on an integer rescaling of T, so they are exact and fast.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from typing import Sequence

import numpy as np

from .linalg import nullspace
from .numbers import fraction_str, integer_form, primitive_integer
from .tensors import associator_parts, left_regular, product, unit as solve_unit


@dataclass
class Properties:
    """Result of the checks.  `counterexamples` maps each refuted law to a sentence."""

    associative: bool
    commutative: bool
    anticommutative: bool
    alternative: bool
    flexible: bool
    jacobi: bool
    unit: tuple | None  # two-sided unit as exact coordinates, or None
    left_unit: tuple | None
    right_unit: tuple | None
    zero_divisor: tuple | None  # (x, y) exact coordinates with x*y = 0, x, y != 0; None if none found
    counterexamples: dict[str, str] = field(default_factory=dict)

    @property
    def unital(self) -> bool:
        return self.unit is not None

    def holds(self, claim: str) -> bool:
        return self.unital if claim == "unital" else bool(getattr(self, claim))

    def summary(self, basis: Sequence[str]) -> list[str]:
        """Short labels for progress lines: assoc, comm, unit=..., zero-divisors ..."""
        tags = []
        for label, ok in (("assoc", self.associative), ("comm", self.commutative),
                          ("anticomm", self.anticommutative), ("alt", self.alternative),
                          ("flex", self.flexible), ("jacobi", self.jacobi)):
            tags.append(label if ok else f"non-{label}")
        tags.append(f"unit={format_element(self.unit, basis)}" if self.unit else "no-unit")
        tags.append("zero-divisors" if self.zero_divisor else "no-zero-divisor-found")
        return tags

    def to_json(self, basis: Sequence[str]) -> dict:
        vec = (lambda v: None if v is None else [fraction_str(c) for c in v])
        return {
            "associative": self.associative, "commutative": self.commutative,
            "anticommutative": self.anticommutative, "alternative": self.alternative,
            "flexible": self.flexible, "jacobi": self.jacobi, "unital": self.unital,
            "unit": vec(self.unit), "left_unit": vec(self.left_unit), "right_unit": vec(self.right_unit),
            "zero_divisor": None if self.zero_divisor is None else [vec(self.zero_divisor[0]),
                                                                   vec(self.zero_divisor[1])],
            "counterexamples": dict(sorted(self.counterexamples.items())),
        }


def format_element(v: Sequence | None, basis: Sequence[str]) -> str:
    """Exact coordinates -> '-e2', '1/2*i + j', '0'.  A basis element named '1' prints as a number."""
    if v is None:
        return "none"
    parts = []
    for c, b in zip(v, basis):
        if c == 0:
            continue
        mag = abs(c) if isinstance(c, Fraction) else c
        sign = "-" if (isinstance(c, Fraction) and c < 0) else "+"
        if b == "1":
            term = fraction_str(mag)
        elif mag == 1:
            term = b
        else:
            term = f"{fraction_str(mag)}*{b}"
        parts.append((sign, term))
    if not parts:
        return "0"
    text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    for sign, term in parts[1:]:
        text += f" {sign} {term}"
    return text


def _e(d: int, *idx: int, signs: Sequence[int] = ()) -> np.ndarray:
    v = np.array([Fraction(0)] * d, dtype=object)
    for n, i in enumerate(idx):
        v[i] += Fraction(signs[n] if signs else 1)
    return v


class _Checker:
    def __init__(self, T: np.ndarray, basis: Sequence[str]):
        self.T = T
        self.basis = list(basis)
        self.d = T.shape[0]
        self.N, self.D = integer_form(T)

    def fmt(self, v) -> str:
        return format_element(v, self.basis)

    def name(self, i: int) -> str:
        return self.basis[i]

    def prod(self, x, y) -> np.ndarray:
        return np.array(product(self.T, x, y), dtype=object)

    def first_nonzero(self, mask: np.ndarray):
        idx = np.argwhere(mask)
        return tuple(int(v) for v in idx[0]) if len(idx) else None


def _nonzero(a: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: v != 0, otypes=[bool])(a) if a.dtype == object else a != 0


def compute(T: np.ndarray, basis: Sequence[str]) -> Properties:
    """Compute all properties of the algebra with structure tensor T (object array (d,d,d))."""
    c = _Checker(T, basis)
    d, N = c.d, c.N
    cx: dict[str, str] = {}
    e = lambda *i, signs=(): _e(d, *i, signs=signs)  # noqa: E731

    def products_sentence(x, y, label_x: str, label_y: str) -> str:
        return f"{label_x}*{label_y} = {c.fmt(c.prod(x, y))} but {label_y}*{label_x} = {c.fmt(c.prod(y, x))}"

    # commutative: e_i e_j = e_j e_i
    bad = c.first_nonzero(_nonzero(N - N.transpose(1, 0, 2)).any(axis=2))
    commutative = bad is None
    if bad:
        i, j = bad
        cx["commutative"] = products_sentence(e(i), e(j), c.name(i), c.name(j))

    # anticommutative: x*x = 0 for all x  <=>  e_i e_i = 0 and e_i e_j = -e_j e_i
    sq = c.first_nonzero(_nonzero(np.einsum("iik->ik", N)).any(axis=1))
    anti = c.first_nonzero(_nonzero(N + N.transpose(1, 0, 2)).any(axis=2))
    anticommutative = sq is None and anti is None
    if sq is not None:
        i = sq[0]
        cx["anticommutative"] = f"{c.name(i)}*{c.name(i)} = {c.fmt(c.prod(e(i), e(i)))}, not 0"
    elif anti is not None:
        i, j = anti
        cx["anticommutative"] = (f"{c.name(i)}*{c.name(j)} = {c.fmt(c.prod(e(i), e(j)))} but "
                                 f"{c.name(j)}*{c.name(i)} = {c.fmt(c.prod(e(j), e(i)))}")

    A1, A2 = associator_parts(N)  # scaled by D^2
    Acore = A1 - A2  # scaled associator (xy)z - x(yz) on basis triples

    def assoc_sentence(x, y, z, lx, ly, lz) -> str:
        left = c.prod(c.prod(x, y), z)
        right = c.prod(x, c.prod(y, z))
        return f"({lx}*{ly})*{lz} = {c.fmt(left)} but {lx}*({ly}*{lz}) = {c.fmt(right)}"

    nz = _nonzero(Acore).any(axis=3)  # (i,j,l) where the associator is non-zero
    bad = c.first_nonzero(nz)
    associative = bad is None
    if bad:
        i, j, l = bad
        cx["associative"] = assoc_sentence(e(i), e(j), e(l), c.name(i), c.name(j), c.name(l))

    def label_sum(i, j):
        return f"({c.name(i)} + {c.name(j)})"

    # Quadratic laws hold iff they hold on e_i and their polarisation holds on basis triples.
    diag_left = _nonzero(np.einsum("iilm->ilm", Acore)).any(axis=2)
    sym_left = _nonzero(Acore + Acore.transpose(1, 0, 2, 3)).any(axis=3)
    diag_right = _nonzero(np.einsum("ijjm->ijm", Acore)).any(axis=2)
    sym_right = _nonzero(Acore + Acore.transpose(0, 2, 1, 3)).any(axis=3)
    diag_flex = _nonzero(np.einsum("ijim->ijm", Acore)).any(axis=2)
    sym_flex = _nonzero(Acore + Acore.transpose(2, 1, 0, 3)).any(axis=3)

    alt_msg = None
    b = c.first_nonzero(diag_left)
    if b is not None:
        i, l = b
        alt_msg = assoc_sentence(e(i), e(i), e(l), c.name(i), c.name(i), c.name(l))
    elif (b := c.first_nonzero(sym_left)) is not None:
        i, j, l = b
        x = e(i, j)
        alt_msg = assoc_sentence(x, x, e(l), label_sum(i, j), label_sum(i, j), c.name(l))
    elif (b := c.first_nonzero(diag_right)) is not None:
        i, j = b
        alt_msg = assoc_sentence(e(i), e(j), e(j), c.name(i), c.name(j), c.name(j))
    elif (b := c.first_nonzero(sym_right)) is not None:
        i, j, l = b
        y = e(j, l)
        alt_msg = assoc_sentence(e(i), y, y, c.name(i), label_sum(j, l), label_sum(j, l))
    alternative = alt_msg is None
    if alt_msg:
        cx["alternative"] = alt_msg

    flex_msg = None
    if (b := c.first_nonzero(diag_flex)) is not None:
        i, j = b
        flex_msg = assoc_sentence(e(i), e(j), e(i), c.name(i), c.name(j), c.name(i))
    elif (b := c.first_nonzero(sym_flex)) is not None:
        i, j, l = b
        x = e(i, l)
        flex_msg = assoc_sentence(x, e(j), x, label_sum(i, l), c.name(j), label_sum(i, l))
    flexible = flex_msg is None
    if flex_msg:
        cx["flexible"] = flex_msg

    # Jacobi: x(yz) + y(zx) + z(xy) = 0 on basis triples; A2[i,j,l] = e_i(e_j e_l)
    J = A2 + A2.transpose(2, 0, 1, 3) + A2.transpose(1, 2, 0, 3)
    b = c.first_nonzero(_nonzero(J).any(axis=3))
    jacobi = b is None
    if b:
        i, j, l = b
        x, y, z = e(i), e(j), e(l)
        total = c.prod(x, c.prod(y, z)) + c.prod(y, c.prod(z, x)) + c.prod(z, c.prod(x, y))
        a_, b_, c_ = c.name(i), c.name(j), c.name(l)
        cx["jacobi"] = f"{a_}*({b_}*{c_}) + {b_}*({c_}*{a_}) + {c_}*({a_}*{b_}) = {c.fmt(total)}, not 0"

    left_unit = solve_unit(T, side="left")
    right_unit = solve_unit(T, side="right")
    unit = None
    if left_unit is not None and right_unit is not None:
        unit = right_unit  # if both exist they coincide: l = l*r = r
    if unit is None:
        cx["unital"] = _no_unit_sentence(c, left_unit, right_unit)

    return Properties(associative=associative, commutative=commutative, anticommutative=anticommutative,
                      alternative=alternative, flexible=flexible, jacobi=jacobi,
                      unit=None if unit is None else tuple(unit),
                      left_unit=None if left_unit is None else tuple(left_unit),
                      right_unit=None if right_unit is None else tuple(right_unit),
                      zero_divisor=find_zero_divisor(T), counterexamples=cx)


def _no_unit_sentence(c: _Checker, left, right) -> str:
    if left is not None:
        return f"{c.fmt(left)} is a left unit but there is no right unit"
    if right is not None:
        return f"{c.fmt(right)} is a right unit but there is no left unit"
    return "no element u satisfies u*x = x for all x (the linear system for a left unit has no solution)"


def find_zero_divisor(T: np.ndarray, max_candidates: int = 2000) -> tuple | None:
    """A witness x*y = 0 with x, y non-zero, searching x among e_i, e_i +- e_j, e_i +- e_j +- e_k."""
    d = T.shape[0]
    candidates = [(i,) for i in range(d)]
    candidates += [(i, j, s) for i, j in combinations(range(d), 2) for s in (1, -1)]
    candidates += [(i, j, k, s, t) for i, j, k in combinations(range(d), 3) for s in (1, -1) for t in (1, -1)]
    for cand in candidates[:max_candidates]:
        x = np.array([Fraction(0)] * d, dtype=object)
        if len(cand) == 1:
            x[cand[0]] = Fraction(1)
        elif len(cand) == 3:
            x[cand[0]], x[cand[1]] = Fraction(1), Fraction(cand[2])
        else:
            x[cand[0]], x[cand[1]], x[cand[2]] = Fraction(1), Fraction(cand[3]), Fraction(cand[4])
        null = nullspace(left_regular(T, x))
        if null:
            y = null[0]
            return tuple(x), tuple(primitive_integer(y))
    return None
