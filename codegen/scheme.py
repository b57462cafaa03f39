"""Bilinear schemes: exact factor matrices, verification, naive scheme, composition, (de)serialisation.

A rank-r scheme for T is (U, V, W), each r x d, with T[i,j,k] = sum_s U[s,i] V[s,j] W[s,k]:
m_s = (U_s . x)(V_s . y), z = sum_s m_s W_s.  x (the weight in layers) is the left factor, so U is the
weight-side map.  Nothing is emitted unless `verify` holds in exact arithmetic.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import exact


@dataclass(frozen=True)
class Scheme:
    """Exact factor matrices (numpy object arrays of Fraction, r x d) and where they came from."""

    U: np.ndarray
    V: np.ndarray
    W: np.ndarray
    provenance: str  # "naive", "given in spec", "composed: ...", "searched: ...", ...

    @property
    def rank(self) -> int:
        return int(self.U.shape[0])

    @property
    def dim(self) -> int:
        return int(self.U.shape[1])

    def tensor(self) -> np.ndarray:
        """The exact tensor the scheme computes: sum_s U[s,i] V[s,j] W[s,k]."""
        return np.einsum("si,sj,sk->ijk", self.U, self.V, self.W)

    def verify(self, T: np.ndarray) -> bool:
        if self.U.shape != self.V.shape or self.U.shape != self.W.shape or self.U.shape[1] != T.shape[0]:
            return False
        diff = self.tensor() - T
        return all(v == 0 for v in diff.reshape(-1))

    def coefficients(self) -> set:
        return {v for M in (self.U, self.V, self.W) for v in M.reshape(-1)}

    def unusual_coefficients(self) -> list[str]:
        """Coefficients other than 0, +-1 and +-powers of two (reported: they cost accuracy or a multiply)."""
        def simple(v) -> bool:
            if not isinstance(v, Fraction) or v == 0:
                return v == 0
            a = abs(v)
            n, m = a.numerator, a.denominator
            return (n & (n - 1)) == 0 and (m & (m - 1)) == 0
        return sorted({exact.fraction_str(v) for v in self.coefficients() if not simple(v)})

    def to_json(self) -> dict:
        mat = (lambda M: [[exact.fraction_str(v) for v in row] for row in M])
        return {"rank": self.rank, "provenance": self.provenance, "U": mat(self.U), "V": mat(self.V),
                "W": mat(self.W)}


def _arr(rows) -> np.ndarray:
    rows = [[Fraction(v) if not isinstance(v, Fraction) else v for v in r] for r in rows]
    return exact.exact_array(rows) if rows else np.empty((0, 0), dtype=object)


def from_json(data: dict, provenance: str | None = None) -> Scheme:
    """Inverse of Scheme.to_json; entries are strings like '-1/2'."""
    return Scheme(_arr(data["U"]), _arr(data["V"]), _arr(data["W"]), provenance or data.get("provenance", "file"))


def naive(T: np.ndarray) -> Scheme:
    """One product per non-zero pair (i, j): U = e_i, V = e_j, W = T[i,j,:].  Always valid."""
    d = T.shape[0]
    U, V, W = [], [], []
    for i in range(d):
        for j in range(d):
            if any(v != 0 for v in T[i, j, :]):
                U.append([Fraction(int(a == i)) for a in range(d)])
                V.append([Fraction(int(a == j)) for a in range(d)])
                W.append(list(T[i, j, :]))
    if not U:  # the zero algebra: rank 0
        empty = np.empty((0, d), dtype=object)
        return Scheme(empty, empty, empty, "naive")
    return Scheme(exact.exact_array(U), exact.exact_array(V), exact.exact_array(W), "naive")


def compose_tensor(a: Scheme, b: Scheme, provenance: str) -> Scheme:
    """Scheme for A (x) B (Kronecker basis) from schemes of A and B: rows are Kronecker products."""
    kron = (lambda X, Y: np.einsum("si,tj->stij", X, Y).reshape(X.shape[0] * Y.shape[0], X.shape[1] * Y.shape[1]))
    return Scheme(kron(a.U, b.U), kron(a.V, b.V), kron(a.W, b.W), provenance)


def change_basis(s: Scheme, P: np.ndarray, provenance: str) -> Scheme:
    """Scheme for the algebra in the basis given by the columns of P (see exact.change_basis).

    x = P x' in old coordinates, so U' = U P, V' = V P and z' = P^-1 z gives W' = W P^-T.
    """
    Pinv = exact.inverse(P)
    return Scheme(s.U.dot(P), s.V.dot(P), s.W.dot(Pinv.T), provenance)


def load_file(path: Path) -> Scheme:
    return from_json(json.loads(Path(path).read_text()), provenance=None)


def save_file(scheme: Scheme, path: Path, *, algebra: str, note: str = "") -> None:
    """Write a reviewable JSON file (one row per line) atomically."""
    data = scheme.to_json()
    lines = ["{", f'  "algebra": {json.dumps(algebra)},', f'  "rank": {scheme.rank},',
             f'  "provenance": {json.dumps(scheme.provenance)},']
    if note:
        lines.append(f'  "note": {json.dumps(note)},')
    for key in ("U", "V", "W"):
        rows = ",\n".join("    " + json.dumps(r) for r in data[key])
        lines.append(f'  "{key}": [\n{rows}\n  ]' + ("," if key != "W" else ""))
    lines.append("}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
