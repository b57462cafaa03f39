"""Exact linear algebra over Q: row reduction, null spaces, solving, inverses, ranks, incremental echelon bases.

Matrices are numpy object arrays (or nested lists) of Fraction; vectors come back as lists of Fraction
(callers wrap them with `fraction_array` when they need arrays).  One implementation of each operation.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from .numbers import fraction_array, zeros

__all__ = ["rref", "nullspace", "solve", "inverse", "rank", "Echelon", "span_basis", "as_rows"]


def as_rows(M: Any) -> list[list[Fraction]]:
    """A matrix (object array or nested lists of exact rationals) as a list of Fraction rows."""
    arr = M if isinstance(M, np.ndarray) and M.dtype == object else fraction_array(M)
    return [list(r) for r in arr]


def _ncols(M: Any) -> int:
    if isinstance(M, np.ndarray):
        return int(M.shape[1]) if M.ndim == 2 else 0
    return len(M[0]) if len(M) else 0


def rref(M: Any, ncols: int | None = None) -> tuple[list[list[Fraction]], list[int]]:
    """Reduced row echelon form: (the nonzero rows, the pivot column of each)."""
    ncols = _ncols(M) if ncols is None else ncols
    rows = [r for r in as_rows(M) if any(r)] if len(M) else []
    piv: list[int] = []
    r = 0
    for c in range(ncols):
        if r == len(rows):
            break
        p = next((i for i in range(r, len(rows)) if rows[i][c] != 0), None)
        if p is None:
            continue
        rows[r], rows[p] = rows[p], rows[r]
        inv = 1 / rows[r][c]
        pr = [x * inv for x in rows[r]]
        rows[r] = pr
        for i in range(len(rows)):
            if i != r:
                f = rows[i][c]
                if f:
                    rows[i] = [a - f * b for a, b in zip(rows[i], pr)]
        piv.append(c)
        r += 1
    return rows[:r], piv


def nullspace(M: Any, ncols: int | None = None) -> list[list[Fraction]]:
    """Basis of {v : M v = 0}: one vector per free column, that column set to 1."""
    ncols = _ncols(M) if ncols is None else ncols
    R, piv = rref(M, ncols)
    basis = []
    for f in (c for c in range(ncols) if c not in piv):
        v = [Fraction(0)] * ncols
        v[f] = Fraction(1)
        for row, p in zip(R, piv):
            v[p] = -row[f]
        basis.append(v)
    return basis


def solve(A: Any, b: Sequence) -> list[Fraction] | None:
    """One exact solution x of A x = b, or None when the system is inconsistent."""
    rows = as_rows(A) if len(A) else []
    n = _ncols(A)
    aug = [r + [Fraction(v)] for r, v in zip(rows, fraction_array(list(b)))]
    R, piv = rref(aug, n + 1)
    if n in piv:
        return None
    x = [Fraction(0)] * n
    for row, p in zip(R, piv):
        x[p] = row[n]
    return x


def inverse(P: Any) -> np.ndarray:
    """Exact inverse of a square matrix (object array); ValueError if it is singular."""
    rows = as_rows(P)
    n = len(rows)
    if any(len(r) != n for r in rows):
        raise ValueError("matrix is not square")
    aug = [r + [Fraction(int(i == j)) for j in range(n)] for i, r in enumerate(rows)]
    R, piv = rref(aug, 2 * n)
    if piv[:n] != list(range(n)) or len(R) < n:
        raise ValueError("matrix is singular")
    out = zeros(n, n)
    for i in range(n):
        out[i, :] = R[i][n:]
    return out


def rank(M: Any) -> int:
    return len(rref(M)[1])


class Echelon:
    """Incremental semi-echelon basis of a growing set of vectors; optionally tracks each reduced row as a
    combination of the inserted vectors (to read off linear dependencies)."""

    def __init__(self, n: int, track: bool = False):
        self.n = n
        self.rows: list[tuple[int, list[Fraction], list[Fraction] | None]] = []
        self.track = track
        self.count = 0

    def reduce(self, v: Sequence[Fraction]):
        v = list(v)
        combo = None
        if self.track:
            combo = [Fraction(0)] * (self.count + 1)
            combo[self.count] = Fraction(1)
        for p, row, rc in self.rows:
            c = v[p]
            if c:
                v = [a - c * b for a, b in zip(v, row)]
                if combo is not None:
                    for t, x in enumerate(rc):
                        if x:
                            combo[t] -= c * x
        return v, combo

    def add(self, v: Sequence[Fraction]):
        """Insert v.  None if v was independent; else the dependency (coefficients c_t with
        sum_t c_t v_t = 0, last coefficient 1) when tracking, else True."""
        r, combo = self.reduce(v)
        p = next((i for i, x in enumerate(r) if x), None)
        if p is None:
            return combo if self.track else True
        inv = 1 / r[p]
        r = [x * inv for x in r]
        if combo is not None:
            combo = [x * inv for x in combo]
        self.rows.append((p, r, combo))
        self.count += 1
        return None

    def contains(self, v) -> bool:
        r, _ = self.reduce(v)
        return not any(r)

    @property
    def rank(self) -> int:
        return len(self.rows)


def span_basis(vectors, d: int, limit: int | None = None) -> list[list[Fraction]]:
    """Greedy basis of span(vectors) taken from the vectors in order (stops at `limit` vectors)."""
    ech = Echelon(d)
    out = []
    for v in vectors:
        if limit is not None and len(out) >= limit:
            break
        if any(v) and ech.add(v) is None:
            out.append(list(v))
    return out
