"""Cayley-Dickson structure of an eight-dimensional alternative algebra (the octonions and their forms), exactly.

With the unit 1, the pure elements (trace zero) carry the form <x, y> = (xy + yx)/2, a multiple of 1.  An orthogonal
pair a, b generates a quaternion subalgebra B = span(1, a, b, ab); a pure c orthogonal to B gives A = B + B c, and
in the basis (B, B c) the product is exactly the Cayley-Dickson double of B with gamma = c^2
(`codegen.exact.tensors.cayley_dickson_tensor`), conjugation fixing 1 and negating a, b, ab.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .linalg import inverse
from .numbers import zeros
from .simple import columns, orthogonal_basis, orthogonal_complement, pure_basis, rational_sqrt
from .tensors import cayley_dickson_tensor, change_basis, is_associative, product, unit
from .wedderburn import subalgebra_tensor

__all__ = ["CayleyDicksonSplit", "cayley_dickson_split"]


@dataclass(frozen=True)
class CayleyDicksonSplit:
    """change_basis(T, P) == cayley_dickson_tensor(B, gamma, conj) with B the half's tensor (basis 1, a, b, ab)."""

    P: np.ndarray
    Pinv: np.ndarray
    B: np.ndarray
    gamma: Fraction
    conj: np.ndarray


def _normalised(v, q):
    """v scaled so that its square is -1 when -q is a rational square (else unchanged)."""
    s = rational_sqrt(-q)
    return ([x / s for x in v], Fraction(-1)) if s else (v, q)


def cayley_dickson_split(T: np.ndarray) -> CayleyDicksonSplit | None:
    """The split described in the module docstring for a unital, non-associative algebra of dimension 8 (None
    when it does not apply or does not check)."""
    d = T.shape[0]
    one = unit(T)
    if d != 8 or one is None or is_associative(T):
        return None
    orth = orthogonal_basis(T, pure_basis(T, one), one)
    if orth is None or len(orth) != 7:
        return None
    (a, qa), (b, qb) = (_normalised(v, q) for v, q in orth[:2])
    ab = product(T, a, b)
    half = [list(one), a, b, ab]
    B = subalgebra_tensor(T, half)
    if B is None:
        return None
    # c: the first of the remaining orthogonal vectors, made orthogonal to ab as well
    rest = orthogonal_basis(T, orthogonal_complement(T, [v for v, _ in orth[2:]], ab, one), one)
    if rest is None:
        return None
    for c, qc in rest:
        c, qc = _normalised(c, qc)
        cols = half + [product(T, x, c) for x in half]
        P = columns(cols)
        try:
            Pinv = inverse(P)
        except ValueError:
            continue
        conj = zeros(4, 4)
        for t in range(4):
            conj[t, t] = Fraction(1 if t == 0 else -1)
        if np.all(change_basis(T, P, Pinv) == cayley_dickson_tensor(B, qc, conj)):
            return CayleyDicksonSplit(P, Pinv, B, qc, conj)
    return None
