"""Independent oracles for the built-in algebras: products computed without the structure tensor.

Each oracle maps coordinate vectors (numpy arrays, any numeric dtype including object/Fraction) to the
product's coordinates in the basis order of docs/design.md.
"""
from __future__ import annotations

import random

import numpy as np
import sympy


def complex_mul(x, y):
    z = complex(x[0], x[1]) * complex(y[0], y[1]) if x.dtype != object else None
    if z is not None:
        return np.array([z.real, z.imag])
    a, b = x
    c, d = y
    return np.array([a * c - b * d, a * d + b * c], dtype=object)


def hamilton(x, y):
    a1, b1, c1, d1 = x
    a2, b2, c2, d2 = y
    return np.array([a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
                     a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
                     a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
                     a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2], dtype=x.dtype)


def dual(x, y):
    return np.array([x[0] * y[0], x[0] * y[1] + x[1] * y[0]], dtype=x.dtype)


def cross(x, y):
    if x.dtype == object:
        return np.array([x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]],
                        dtype=object)
    return np.cross(x, y)


def matrix_mul(n):
    def mul(x, y):
        return (np.asarray(x).reshape(n, n).dot(np.asarray(y).reshape(n, n))).reshape(-1)
    return mul


def m2c(x, y):
    X = np.asarray(x).reshape(2, 2, 2)
    Y = np.asarray(y).reshape(2, 2, 2)
    if X.dtype == object:  # exact: (a+bi)(c+di) by hand
        out = np.empty((2, 2, 2), dtype=object)
        for r in range(2):
            for c in range(2):
                re = sum(X[r, k, 0] * Y[k, c, 0] - X[r, k, 1] * Y[k, c, 1] for k in range(2))
                im = sum(X[r, k, 0] * Y[k, c, 1] + X[r, k, 1] * Y[k, c, 0] for k in range(2))
                out[r, c] = (re, im)
        return out.reshape(-1)
    Z = (X[..., 0] + 1j * X[..., 1]) @ (Y[..., 0] + 1j * Y[..., 1])
    return np.stack([Z.real, Z.imag], axis=-1).reshape(-1)


def octonion(x, y):
    """Cayley-Dickson on quaternion pairs, by Hamilton's formulas: (a + b l)(c + d l) = (ac - conj(d) b) + (da +
    b conj(c)) l, conj negating i, j, k (basis 1, i, j, k, l, il, jl, kl)."""
    x, y = np.asarray(x), np.asarray(y)
    a, b, c, d = x[:4], x[4:], y[:4], y[4:]
    sign = np.array([1, -1, -1, -1])
    conj = (lambda q: q * sign.astype(q.dtype) if q.dtype != object else np.array([q[0], -q[1], -q[2], -q[3]],
                                                                                      dtype=object))
    return np.concatenate([hamilton(a, c) - hamilton(conj(d), b), hamilton(d, a) + hamilton(b, conj(c))])


def random_control(d: int, nonzeros: int, seed: int):
    """The random controls (algebra_spec/random_control.py) redrawn from their documented rule, with SymPy ranks:
    `random.Random(seed)` picks `nonzeros` distinct cells of the d^3 by a partial Fisher-Yates shuffle of the
    cell indices, then a sign per cell in index order, then a test element w in [-2^20, 2^20]^d; the first draw
    whose L(w) and R(w) have full rank is the tensor.  Returns the product (x, y) -> x*y."""
    rng = random.Random(seed)
    while True:
        cells = list(range(d ** 3))
        for t in range(nonzeros):
            s = t + rng.randrange(d ** 3 - t)
            cells[t], cells[s] = cells[s], cells[t]
        T = np.zeros((d, d, d), dtype=object)
        for c in sorted(cells[:nonzeros]):
            T[np.unravel_index(c, (d, d, d))] = 1 if rng.randrange(2) else -1
        w = [rng.randrange(-2 ** 20, 2 ** 20 + 1) for _ in range(d)]
        L = sympy.Matrix(d, d, lambda k, j: sum(int(T[i, j, k]) * w[i] for i in range(d)))
        R = sympy.Matrix(d, d, lambda k, i: sum(int(T[i, j, k]) * w[j] for j in range(d)))
        if L.rank() == d and R.rank() == d:
            break

    def mul(x, y):
        return np.einsum("ijk,i,j->k", T, np.asarray(x, dtype=object), np.asarray(y, dtype=object)).astype(
            x.dtype if x.dtype != object else object)
    return mul


ORACLES = {
    "R": lambda x, y: x * y,
    "C": complex_mul,
    "H": hamilton,
    "Dual": dual,
    "Cross3": cross,
    "M2R": matrix_mul(2),
    "M3R": matrix_mul(3),
    "M4R": matrix_mul(4),
    "M2C": m2c,
    "O": octonion,
    "RandH": random_control(4, 16, 0),
    "RandM4R": random_control(16, 64, 0),
}

DIMS = {"R": 1, "C": 2, "H": 4, "Dual": 2, "Cross3": 3, "M2R": 4, "M3R": 9, "M4R": 16, "M2C": 8, "O": 8,
        "RandH": 4, "RandM4R": 16}


def oracle_tensor(name: str) -> np.ndarray:
    """T[i,j,k] from the oracle applied to basis vectors (exact integers)."""
    d = DIMS[name]
    T = np.zeros((d, d, d), dtype=object)
    eye = np.eye(d, dtype=int).astype(object)
    for i in range(d):
        for j in range(d):
            T[i, j, :] = ORACLES[name](eye[i], eye[j])
    return T
