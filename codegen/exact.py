"""Exact linear algebra on structure tensors.

Tensors are numpy object arrays whose entries are `fractions.Fraction` (every algebra with rational
structure constants) or exact SymPy numbers (algebraic constants such as sqrt(2)). Law checks that cost
O(d^4..d^5) run on an integer rescaling of the tensor, so they are exact and fast (M4R in milliseconds).
"""
from __future__ import annotations

from fractions import Fraction
from math import gcd, lcm
from typing import Any, Sequence

import numpy as np

Exact = Any  # Fraction or an exact SymPy number


def to_exact(value: Any) -> Exact:
    """Convert an exact number (int, Fraction, SymPy Rational/algebraic) to Fraction where rational."""
    if isinstance(value, bool):
        raise TypeError(f"expected a number, got bool {value!r}")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    try:  # SymPy numbers; imported lazily so the runtime never needs SymPy through this module
        import sympy

        if isinstance(value, sympy.Basic):
            if value.is_Rational:
                return Fraction(int(value.p), int(value.q))
            return value
    except ImportError:  # pragma: no cover - sympy is a hard dependency of codegen
        pass
    raise TypeError(f"expected an exact number, got {type(value).__name__} {value!r}")


def exact_array(nested: Any) -> np.ndarray:
    """Nested sequences of exact numbers -> numpy object array of Fraction/SymPy numbers."""
    arr = np.array(nested, dtype=object)
    flat = [to_exact(v) for v in arr.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape)


def is_rational(arr: np.ndarray) -> bool:
    return all(isinstance(v, Fraction) for v in arr.reshape(-1))


def integer_form(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Return (N, D) with arr == N / D exactly, N an int64 array (object ints if large)."""
    den = 1
    for v in arr.reshape(-1):
        den = lcm(den, v.denominator)
    ints = [int(v * den) for v in arr.reshape(-1)]
    dtype = np.int64 if max((abs(v) for v in ints), default=0) < 2**20 else object
    return np.array(ints, dtype=dtype).reshape(arr.shape), den


def fraction_str(v: Exact) -> str:
    """Canonical text for an exact number: '3', '-1/2', or SymPy's srepr-free string."""
    if isinstance(v, Fraction):
        return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
    return str(v)


def product(T: np.ndarray, x: Sequence, y: Sequence) -> np.ndarray:
    """Exact x*y for coordinate vectors x, y: (x*y)_k = sum_ij T[i,j,k] x_i y_j."""
    x = np.asarray(x, dtype=object)
    y = np.asarray(y, dtype=object)
    return np.einsum("ijk,i,j->k", T, x, y)


def left_regular(T: np.ndarray, x: Sequence) -> np.ndarray:
    """L(x) with (x*y) = L(x) @ y, i.e. L(x)[k, j] = sum_i T[i,j,k] x_i.  Shape (d, d)."""
    return np.einsum("ijk,i->kj", T, np.asarray(x, dtype=object))


def right_regular(T: np.ndarray, y: Sequence) -> np.ndarray:
    """R(y) with (x*y) = R(y) @ x, i.e. R(y)[k, i] = sum_j T[i,j,k] y_j.  Shape (d, d)."""
    return np.einsum("ijk,j->ki", T, np.asarray(y, dtype=object))


def rref(M: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Reduced row echelon form over the exact field; returns (R, pivot columns)."""
    R = np.array(M, dtype=object).copy()
    rows, cols = R.shape
    pivots: list[int] = []
    r = 0
    for c in range(cols):
        if r == rows:
            break
        nz = [i for i in range(r, rows) if R[i, c] != 0]
        if not nz:
            continue
        p = nz[0]
        R[[r, p]] = R[[p, r]]
        R[r] = R[r] / R[r, c]
        for i in range(rows):
            if i != r and R[i, c] != 0:
                R[i] = R[i] - R[i, c] * R[r]
        pivots.append(c)
        r += 1
    return R, pivots


def nullspace(M: np.ndarray) -> list[np.ndarray]:
    """Basis of {v : M v = 0} over the exact field."""
    M = np.array(M, dtype=object)
    cols = M.shape[1]
    R, pivots = rref(M)
    free = [c for c in range(cols) if c not in pivots]
    basis = []
    for f in free:
        v = np.array([Fraction(0)] * cols, dtype=object)
        v[f] = Fraction(1)
        for row, pc in enumerate(pivots):
            v[pc] = -R[row, f]
        basis.append(v)
    return basis


def solve(A: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """One exact solution of A x = b, or None when the system is inconsistent."""
    A = np.array(A, dtype=object)
    aug = np.concatenate([A, np.array(b, dtype=object).reshape(-1, 1)], axis=1)
    R, pivots = rref(aug)
    n = A.shape[1]
    if n in pivots:
        return None
    x = np.array([Fraction(0)] * n, dtype=object)
    for row, pc in enumerate(pivots):
        x[pc] = R[row, n]
    return x


def inverse(P: np.ndarray) -> np.ndarray:
    """Exact inverse of a square matrix; ValueError if singular."""
    P = np.array(P, dtype=object)
    n = P.shape[0]
    eye = np.array([[Fraction(int(i == j)) for j in range(n)] for i in range(n)], dtype=object)
    R, pivots = rref(np.concatenate([P, eye], axis=1))
    if pivots[:n] != list(range(n)):
        raise ValueError("matrix is singular")
    return R[:, n:]


def change_basis(T: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Structure tensor in the basis whose vectors are the columns of P (old coordinates).

    T'[a,b,c] = sum_ijk P[i,a] P[j,b] T[i,j,k] Pinv[c,k].
    """
    Pinv = inverse(P)
    return np.einsum("ia,jb,ijk,ck->abc", P, P, T, Pinv, optimize=True)


def primitive_integer(v: Sequence) -> list[Fraction]:
    """Scale v to a primitive integer vector whose first nonzero entry is positive."""
    D = 1
    for x in v:
        D = lcm(D, x.denominator)
    ints = [int(x * D) for x in v]
    g = 0
    for x in ints:
        g = gcd(g, x)
    if g == 0:
        return list(v)
    first = next(x for x in ints if x)
    if first < 0:
        g = -g
    return [Fraction(x, g) for x in ints]
