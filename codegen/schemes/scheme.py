"""Bilinear schemes: the one `Scheme` type of the build and the search, its exact verification and constructions.

A rank-r scheme for T is (U, V, W), each r x d, with T[i,j,k] = sum_s U[s,i] V[s,j] W[s,k]:
m_s = (U_s . x)(V_s . y), z = sum_s m_s W_s.  x (the weight in layers) is the left factor, so U is the
weight-side map.  Nothing is emitted unless `Scheme.verify` holds in exact arithmetic.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..exact import content, exact_dot, fraction_array, fraction_str, integer_form, inverse, nonzero_pairs, zeros

__all__ = ["Scheme", "naive", "compose_tensor", "change_basis", "direct_sum", "opposite", "cayley_dickson",
           "extension", "weight_side_constants", "from_json", "load_file", "save_file"]

_INT64_LIMIT = 1 << 62


@dataclass(frozen=True, eq=False)
class Scheme:
    """Exact factor matrices (object arrays of Fraction, r x d) and where they came from.

    Unpacks as (U, V, W).  Build one from any exact rationals with `Scheme.of(U, V, W)`.
    """

    U: np.ndarray
    V: np.ndarray
    W: np.ndarray
    provenance: str = ""  # "naive", "given in spec", "composed: ...", "searched: ...", ...

    @classmethod
    def of(cls, U: Any, V: Any, W: Any, provenance: str = "", dim: int | None = None) -> "Scheme":
        """From nested sequences / arrays of exact rationals (the number policy of `codegen.exact`).
        `dim` gives the width of empty (rank-0) factors."""
        mats = []
        for M in (U, V, W):
            arr = fraction_array(M)
            if arr.size == 0:
                arr = zeros(0, dim if dim is not None else (arr.shape[1] if arr.ndim == 2 else 0))
            mats.append(arr)
        return cls(*mats, provenance=provenance)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.U, self.V, self.W))

    @property
    def rank(self) -> int:
        return int(self.U.shape[0])

    @property
    def dim(self) -> int:
        return int(self.U.shape[1])

    def with_provenance(self, provenance: str) -> "Scheme":
        return replace(self, provenance=provenance)

    def tensor(self) -> np.ndarray:
        """The exact tensor the scheme computes: sum_s U[s,i] V[s,j] W[s,k]."""
        d = self.dim
        if self.rank == 0:
            return zeros(d, d, d)
        (Nu, Du), (Nv, Dv), (Nw, Dw) = (integer_form(M, int64=False) for M in self)
        S = np.einsum("si,sj,sk->ijk", Nu, Nv, Nw)
        D = Du * Dv * Dw
        out = np.empty(S.shape, dtype=object)
        out.reshape(-1)[:] = [Fraction(int(v), D) for v in S.reshape(-1)]
        return out

    def verify(self, T: np.ndarray) -> bool:
        """Exactly T[i,j,k] == sum_s U[s,i] V[s,j] W[s,k] (integer arithmetic on common denominators)."""
        d = T.shape[0]
        if any(M.ndim != 2 or M.shape != (self.rank, d) for M in self) or T.shape != (d, d, d):
            return False
        if self.rank == 0:
            return all(v == 0 for v in T.reshape(-1))
        (Nt, Dt), (Nu, Du), (Nv, Dv), (Nw, Dw) = (integer_form(M, int64=False) for M in (T, *self))
        D3 = Du * Dv * Dw
        big = max(_maxabs(Nu) * _maxabs(Nv) * _maxabs(Nw) * self.rank * Dt, _maxabs(Nt) * D3)
        if big < _INT64_LIMIT:      # the common case: exact in int64, and fast
            S = np.einsum("si,sj,sk->ijk", *(M.astype(np.int64) for M in (Nu, Nv, Nw))) * Dt
            return bool(np.array_equal(S, Nt.astype(np.int64) * D3))
        return bool(np.all(np.einsum("si,sj,sk->ijk", Nu, Nv, Nw) * Dt == Nt * D3))

    def mismatch(self, T: np.ndarray, basis: Sequence[str]) -> str:
        """Describe the first structure constant the scheme gets wrong (for error messages)."""
        d = T.shape[0]
        if any(M.ndim != 2 or M.shape[1] != d for M in self) or not (self.U.shape == self.V.shape == self.W.shape):
            return (f"its matrices have shapes {self.U.shape}, {self.V.shape}, {self.W.shape}; each must be r x {d}")
        got = self.tensor()
        for idx in np.ndindex(*T.shape):
            if got[idx] != T[idx]:
                i, j, k = idx
                return (f"it gives T[{i},{j},{k}] = {fraction_str(got[idx])} but the coefficient of {basis[k]} in "
                        f"{basis[i]}*{basis[j]} is {fraction_str(T[idx])}")
        return "it does not reproduce the structure tensor"

    def error_growth(self, T: np.ndarray) -> float:
        """How much larger the scheme's rounding error can be than the naive product's, for the tensor T it
        computes: max over outputs k of max_ij sum_s |W[s,k] U[s,i] V[s,j]| / max_ij |T[i,j,k]| (a float
        estimate; inf when a coefficient does not fit a float).  Known schemes stay below 20; a scheme through an
        ill-scaled basis change (x0 + 10^10 x1) reaches 10^10 and loses that factor of accuracy to
        cancellation."""
        try:
            U, V, W = (np.abs(np.asarray(M, dtype=np.float64)) for M in (self.U, self.V, self.W))
            Ta = np.abs(np.asarray(T, dtype=np.float64))
        except OverflowError:
            return float("inf")
        top = float(Ta.max())
        worst = 0.0
        for k in range(self.dim):
            A = (U * W[:, k, None]).T @ V                    # A[i, j] = sum_s |U[s,i]| |V[s,j]| |W[s,k]|
            den = float(Ta[:, :, k].max()) or top
            worst = max(worst, float(A.max()) / den if den else float("inf"))
        return worst

    def coefficients(self) -> set:
        return {v for M in self for v in M.reshape(-1)}

    def unusual_coefficients(self) -> list[str]:
        """Coefficients other than 0, +-1 and +-powers of two (reported: they cost accuracy or a multiply)."""
        def simple(v: Fraction) -> bool:
            n, m = abs(v.numerator), v.denominator
            return n == 0 or ((n & (n - 1)) == 0 and (m & (m - 1)) == 0)
        return sorted({fraction_str(v) for v in self.coefficients() if not simple(v)})

    def additions(self) -> tuple[int, int]:
        """Additions before common-subexpression elimination: (activation side V + post map W, weight side U);
        a row (a column of W) with n nonzeros costs n - 1.  Layers pay the first per call, the second once per
        weight update."""
        def adds(M: np.ndarray) -> int:
            return sum(max(int(np.count_nonzero(M[t] != 0)) - 1, 0) for t in range(M.shape[0]))
        return adds(self.V) + adds(self.W.T), adds(self.U)

    def coefficient_size(self) -> tuple[int, int]:
        """(largest, sum of) max(|numerator|, denominator) over the nonzero coefficients: 1 for a scheme of 0, +-1."""
        sizes = [max(abs(v.numerator), v.denominator) for M in self for v in M.reshape(-1) if v != 0]
        return max(sizes, default=0), sum(sizes)

    def to_json(self) -> dict:
        mat = (lambda M: [[fraction_str(v) for v in row] for row in M])
        return {"rank": self.rank, "provenance": self.provenance, "U": mat(self.U), "V": mat(self.V),
                "W": mat(self.W)}


def _maxabs(N: np.ndarray) -> int:
    return max((abs(int(v)) for v in N.reshape(-1)), default=0)


def naive(T: np.ndarray) -> Scheme:
    """One product per non-zero pair (i, j): U = e_i, V = e_j, W = T[i,j,:].  Always valid."""
    d = T.shape[0]
    pairs = nonzero_pairs(T)
    U, V, W = zeros(len(pairs), d), zeros(len(pairs), d), zeros(len(pairs), d)
    for s, (i, j) in enumerate(pairs):
        U[s, i] = Fraction(1)
        V[s, j] = Fraction(1)
        W[s, :] = T[i, j, :]
    return Scheme(U, V, W, "naive")


def compose_tensor(a: Scheme, b: Scheme, provenance: str) -> Scheme:
    """Scheme for A (x) B (Kronecker basis, index i*dim(B) + j) from schemes of A and B: rows are Kronecker
    products of rows."""
    def kron(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return np.einsum("si,tj->stij", X, Y).reshape(X.shape[0] * Y.shape[0], X.shape[1] * Y.shape[1])
    return Scheme(kron(a.U, b.U), kron(a.V, b.V), kron(a.W, b.W), provenance)


def change_basis(s: Scheme, P: np.ndarray, provenance: str | None = None, Pinv: np.ndarray | None = None) -> Scheme:
    """The scheme for the tensor in the basis given by the columns of P (see `codegen.exact.change_basis`).

    x = P x' in old coordinates, so U' = U P, V' = V P, and z' = P^-1 z gives W' = W P^-T.  Mapping a scheme
    of the new tensor back to the old basis is the same call with P^-1 in place of P."""
    P = fraction_array(P)
    Pinv = inverse(P) if Pinv is None else fraction_array(Pinv)
    return Scheme(exact_dot(s.U, P), exact_dot(s.V, P), exact_dot(s.W, Pinv.T),
                  s.provenance if provenance is None else provenance)


def direct_sum(schemes: Sequence[Scheme], provenance: str) -> Scheme:
    """Block-diagonal concatenation: schemes of blocks A_1..A_t -> scheme of A_1 x ... x A_t (blocks in order)."""
    d = sum(s.dim for s in schemes)
    r = sum(s.rank for s in schemes)
    out = [zeros(r, d) for _ in range(3)]
    row = col = 0
    for s in schemes:
        for M, S in zip(out, s):
            M[row:row + s.rank, col:col + s.dim] = S
        row += s.rank
        col += s.dim
    return Scheme(*out, provenance=provenance)


def opposite(s: Scheme, provenance: str) -> Scheme:
    """Scheme for the opposite algebra (x*y := y x): the two input maps swap."""
    return Scheme(s.V, s.U, s.W, provenance)


def _blocks(*rows) -> np.ndarray:
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)


def cayley_dickson(s: Scheme, gamma: Fraction, conj: np.ndarray, provenance: str) -> Scheme:
    """Scheme for the Cayley-Dickson double of A from a scheme s of A (rank 4r).

    Coordinates (a, b) of a + b l; the product is (a, b)(c, d) = (ac + gamma conj(d) b, d a + b conj(c)) with
    conj(x) = conj @ x: four products of A, each by s (the factors from y may stand on either side of s, since
    every term is a product of a linear form in x and one in y)."""
    Z = zeros(s.rank, s.dim)
    U, V, W = s
    gamma = Fraction(gamma)
    Uc, Vc = U.dot(conj), V.dot(conj)
    return Scheme(_blocks([U, Z], [Z, V], [V, Z], [Z, U]),        # x-side forms: a, b, a, b
                  _blocks([V, Z], [Z, Uc], [Z, U], [Vc, Z]),      # y-side forms: c, conj(d), d, conj(c)
                  _blocks([W, Z], [W * gamma, Z], [Z, W], [Z, W]), provenance)


def extension(s: Scheme, theta: np.ndarray, provenance: str) -> Scheme:
    """Scheme for A = S + gS with (a + g b)(c + g d) = ac + g(theta(a) d + b c) (g S = S g, g^2 = 0, e.g. a
    degenerate Clifford generator over the Clifford algebra of the others): three products of S (rank 3r).
    Coordinates (a, b); theta(a) = theta @ a."""
    Z = zeros(s.rank, s.dim)
    U, V, W = s
    return Scheme(_blocks([U, Z], [U.dot(theta), Z], [Z, U]),
                  _blocks([V, Z], [Z, V], [V, Z]),
                  _blocks([W, Z], [Z, W], [Z, W]), provenance)


def weight_side_constants(s: Scheme) -> Scheme:
    """Move every term's scalar content to the weight side: v_s, w_s -> primitive integer vectors
    (v/a, w/b) and u_s -> a*b*u_s.  The same products exactly; U is applied offline, so the per-call maps V and
    W are left with small integers."""
    U, V, W = (M.copy() for M in s)
    for t in range(s.rank):
        a, b = content(V[t]), content(W[t])
        V[t] = [x / a for x in V[t]]
        W[t] = [x / b for x in W[t]]
        U[t] = [x * a * b for x in U[t]]
    return Scheme(U, V, W, s.provenance)


def from_json(data: dict, provenance: str | None = None, dim: int | None = None) -> Scheme:
    """Inverse of Scheme.to_json; entries are exact strings like '-1/2'."""
    return Scheme.of(data["U"], data["V"], data["W"], provenance or data.get("provenance", "file"), dim=dim)


def load_file(path: Path, dim: int | None = None) -> Scheme:
    return from_json(json.loads(Path(path).read_text()), provenance=None, dim=dim)


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
