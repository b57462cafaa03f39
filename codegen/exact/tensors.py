"""Exact operations on structure tensors T (object arrays of Fraction, shape (d, d, d)).

Convention: (x*y)_k = sum_ij T[i,j,k] x_i y_j with x the left factor.  A basis change x = P x' (the columns of
P are the new basis vectors in old coordinates) gives T'[a,b,c] = sum_ijk P[i,a] P[j,b] T[i,j,k] Pinv[c,k].
"""
from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np

from .linalg import inverse, nullspace, solve
from .numbers import fraction_array, integer_form, zeros

__all__ = ["product", "left_regular", "right_regular", "change_basis", "unit", "centre", "associator_parts",
           "is_associative", "matrix_tensor", "basis_vector", "nonzero_pairs", "is_zero_tensor", "tensor_product",
           "direct_sum_tensor", "opposite_tensor", "cayley_dickson_tensor", "extension_tensor", "quaternion_tensor", "power_tensor",
           "tensor_key"]


def product(T: np.ndarray, x: Sequence, y: Sequence) -> list[Fraction]:
    """x*y for exact coordinate vectors (skips zero coordinates: fast on sparse tensors)."""
    d = T.shape[0]
    out = [Fraction(0)] * d
    for i in range(d):
        xi = x[i]
        if not xi:
            continue
        for j in range(d):
            yj = y[j]
            if not yj:
                continue
            c = xi * yj
            row = T[i, j]
            for k in range(d):
                t = row[k]
                if t:
                    out[k] += c * t
    return out


def left_regular(T: np.ndarray, x: Sequence) -> np.ndarray:
    """L(x) with x*y = L(x) @ y: L(x)[k, j] = sum_i T[i,j,k] x_i.  Shape (d, d)."""
    d = T.shape[0]
    L = zeros(d, d)
    for i in range(d):
        if x[i]:
            L += x[i] * T[i].T
    return L


def right_regular(T: np.ndarray, y: Sequence) -> np.ndarray:
    """R(y) with x*y = R(y) @ x: R(y)[k, i] = sum_j T[i,j,k] y_j.  Shape (d, d)."""
    d = T.shape[0]
    R = zeros(d, d)
    for j in range(d):
        if y[j]:
            R += y[j] * T[:, j, :].T
    return R


def change_basis(T: np.ndarray, P: np.ndarray, Pinv: np.ndarray | None = None) -> np.ndarray:
    """The tensor in the basis given by the columns of P (x = P x'); ValueError if P is singular.

    Computed on integer numerators (exact and much faster than Fraction arithmetic)."""
    P = fraction_array(P)
    Pinv = inverse(P) if Pinv is None else fraction_array(Pinv)
    (Ti, Dt), (Pi, Dp), (Qi, Dq) = (integer_form(M, int64=False) for M in (T, P, Pinv))
    X = np.tensordot(Pi, Ti, axes=([0], [0]))      # [a,j,k] = sum_i P[i,a] T[i,j,k]
    X = np.tensordot(X, Pi, axes=([1], [0]))       # [a,k,b]
    X = np.tensordot(X, Qi, axes=([1], [1]))       # [a,b,c]
    D = Dt * Dp * Dp * Dq
    out = np.empty(X.shape, dtype=object)
    out.reshape(-1)[:] = [Fraction(int(v), D) for v in X.reshape(-1)]
    return out


def unit(T: np.ndarray, side: str = "two") -> list[Fraction] | None:
    """A unit: u*x = x for all x (side "left"), x*u = x ("right"), or both ("two"); None if there is none."""
    d = T.shape[0]
    rows, rhs = [], []
    for j in range(d):
        for k in range(d):
            if side in ("left", "two"):        # sum_i u_i T[i,j,k] = delta_jk
                rows.append([T[i, j, k] for i in range(d)])
                rhs.append(Fraction(int(j == k)))
            if side in ("right", "two"):       # sum_i u_i T[j,i,k] = delta_jk
                rows.append([T[j, i, k] for i in range(d)])
                rhs.append(Fraction(int(j == k)))
    if side not in ("left", "right", "two"):
        raise ValueError(f"side must be 'left', 'right' or 'two', got {side!r}")
    return solve(rows, rhs)


def centre(T: np.ndarray) -> list[list[Fraction]]:
    """Basis of the commutative centre {z : z*x = x*z for all x} (the centre when T is associative)."""
    d = T.shape[0]
    rows = [[T[i, j, k] - T[j, i, k] for i in range(d)] for j in range(d) for k in range(d)]
    return nullspace(rows, d)


def associator_parts(N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For an integer tensor N: A1[i,j,l,:] = (e_i e_j) e_l and A2[i,j,l,:] = e_i (e_j e_l)."""
    A1 = np.einsum("ijk,klm->ijlm", N, N, optimize=True)
    A2 = np.einsum("jlk,ikm->ijlm", N, N, optimize=True)
    return A1, A2


def is_associative(T: np.ndarray) -> bool:
    A1, A2 = associator_parts(integer_form(T)[0])
    return bool(np.all(A1 == A2))


def matrix_tensor(n: int) -> np.ndarray:
    """M_n in the row-major matrix-unit basis: E_ab E_cd = delta_bc E_ad (index n*row + col)."""
    d = n * n
    T = zeros(d, d, d)
    for a in range(n):
        for b in range(n):
            for c in range(n):
                T[n * a + b, n * b + c, n * a + c] = Fraction(1)
    return T


def basis_vector(d: int, i: int) -> list[Fraction]:
    return [Fraction(int(a == i)) for a in range(d)]


def nonzero_pairs(T: np.ndarray) -> list[tuple[int, int]]:
    """The pairs (i, j) with e_i * e_j != 0, row-major (the naive multiplication count is their number)."""
    d = T.shape[0]
    return [(i, j) for i in range(d) for j in range(d) if any(v != 0 for v in T[i, j, :])]


def is_zero_tensor(T: np.ndarray) -> bool:
    return all(v == 0 for v in T.reshape(-1))


def tensor_product(TA: np.ndarray, TB: np.ndarray) -> np.ndarray:
    """A (x) B in the Kronecker basis (index a * dim B + b)."""
    da, db = TA.shape[0], TB.shape[0]
    return np.einsum("ijk,abc->iajbkc", TA, TB).reshape(da * db, da * db, da * db)


def direct_sum_tensor(tensors: Sequence[np.ndarray]) -> np.ndarray:
    """A_1 x ... x A_t with the blocks' bases one after the other."""
    d = sum(T.shape[0] for T in tensors)
    out = zeros(d, d, d)
    o = 0
    for T in tensors:
        m = T.shape[0]
        out[o:o + m, o:o + m, o:o + m] = T
        o += m
    return out


def opposite_tensor(T: np.ndarray) -> np.ndarray:
    """The opposite algebra: x *op y = y * x."""
    return np.ascontiguousarray(T.transpose(1, 0, 2))


def cayley_dickson_tensor(T: np.ndarray, gamma, conj: np.ndarray) -> np.ndarray:
    """The Cayley-Dickson double of A: basis (e_i, 0) then (0, e_i) = e_i l, product
    (a, b)(c, d) = (ac + gamma conj(d) b, d a + b conj(c)) with conj(x) = conj @ x (so l^2 = gamma)."""
    d = T.shape[0]
    gamma = Fraction(gamma)
    TC = np.einsum("mj,imk->ijk", conj, T)           # e_i conj(e_j)
    CT = np.einsum("mj,mik->ijk", conj, T)           # conj(e_j) e_i
    out = zeros(2 * d, 2 * d, 2 * d)
    out[:d, :d, :d] = T
    out[:d, d:, d:] = T.transpose(1, 0, 2)           # a * (0, d) = (0, d a)
    out[d:, :d, d:] = TC                             # (0, b) * c = (0, b conj(c))
    out[d:, d:, :d] = CT * gamma                     # (0, b)(0, d) = (gamma conj(d) b, 0)
    return out


def extension_tensor(T: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """S + gS with g^2 = 0 and s g = g theta(s): basis (e_i, 0) then (0, e_i) = g e_i, product
    (a + g b)(c + g d) = ac + g(theta(a) d + b c)."""
    d = T.shape[0]
    out = zeros(2 * d, 2 * d, 2 * d)
    out[:d, :d, :d] = T
    out[:d, d:, d:] = np.einsum("mi,mjk->ijk", theta, T)
    out[d:, :d, d:] = T
    return out


def quaternion_tensor() -> np.ndarray:
    """H in the basis (1, i, j, k)."""
    T = zeros(4, 4, 4)
    table = {(0, a): (1, a) for a in range(4)}
    table.update({(a, 0): (1, a) for a in range(1, 4)})
    table.update({(1, 1): (-1, 0), (2, 2): (-1, 0), (3, 3): (-1, 0), (1, 2): (1, 3), (2, 1): (-1, 3),
                  (2, 3): (1, 1), (3, 2): (-1, 1), (3, 1): (1, 2), (1, 3): (-1, 2)})
    for (i, j), (s, k) in table.items():
        T[i, j, k] = Fraction(s)
    return T


def power_tensor(f) -> np.ndarray:
    """Q[t]/(f) in the power basis; f = (f_0, ..., f_{n-1}) are the low coefficients of the monic f."""
    n = len(f)
    red = [[Fraction(int(k == m)) for m in range(n)] for k in range(n)]    # t^k mod f, k < 2n - 1
    for k in range(n, 2 * n - 1):
        prev = red[-1]
        nxt = [Fraction(0)] + prev[:-1]                                   # t * t^(k-1), before reducing t^n
        top = prev[-1]
        red.append([nxt[m] - top * f[m] for m in range(n)])
    T = zeros(n, n, n)
    for i in range(n):
        for j in range(n):
            T[i, j, :] = red[i + j]
    return T


def tensor_key(T: np.ndarray) -> tuple:
    """A hashable exact form of a tensor (equal keys: the same tensor)."""
    return (T.shape, tuple(str(v) for v in T.reshape(-1)))
