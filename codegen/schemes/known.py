"""Known optimal schemes, recognised by the exact structure tensor (not by name).

`known_scheme(T)` returns a verified scheme when T is exactly one of:
  - M_2 in the row-major matrix-unit basis (`codegen.exact.matrix_tensor(2)`): Winograd's variant of Strassen, 7;
  - the quaternions in the basis (1, i, j, k), i^2 = j^2 = k^2 = ijk = -1: Howell-Lafon, 8;
  - a monogenic algebra Q[t]/(f) in the power basis (1, t, ..., t^(n-1)), f monic of degree n >= 2 (the complex
    numbers, Q(zeta_5), the dual numbers, ...): Toom-Cook, 2n - 1 (evaluation at 2n - 1 points, exact
    interpolation, reduction mod f).
and the scheme library: the best stored scheme of a built-in algebra, recognised by its canonical tensor, for
  - M_3 and M_4 in the row-major matrix-unit basis (`algebra_spec/schemes/M3R.json`, 23; `M4R.json`, 48);
  - the octonions, the Cayley-Dickson double of H with l^2 = -1 in the basis (1, i, j, k, l, il, jl, kl)
    (`algebra_spec/schemes/O.json`).
These are the leaves the structural route (`codegen.schemes.structure`) and the builders (`codegen.spec.builders`)
reduce algebras to; everything else is composed from them, and an algebra isomorphic to a library tensor (a table
typed in another basis) gets the library scheme through the exact basis change the structural route finds.
A library file that is missing, unreadable or wrong is skipped (the built-in algebra's own build reports it).
"""
from __future__ import annotations

import json
from fractions import Fraction
from functools import lru_cache

import numpy as np

from ..exact import (InexactNumberError, cayley_dickson_tensor, fraction_array, identity, inverse, matrix_tensor,
                     power_tensor, quaternion_tensor, tensor_key, zeros)
from ..contract.digest import SCHEME_LIBRARY, SCHEME_LIBRARY_DIR
from .scheme import Scheme, from_json

__all__ = ["known_scheme", "library_scheme", "octonion_tensor", "power_polynomial", "irreducible", "toom_cook",
           "WINOGRAD", "STRASSEN", "HOWELL_LAFON"]

# Winograd's variant of Strassen: 7 multiplications, 15 additions after CSE.
WINOGRAD = Scheme.of(
    [[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, -1, -1], [0, 0, 0, 1], [0, 0, 1, 1], [-1, 0, 1, 1], [1, 0, -1, 0]],
    [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, -1, -1, 1], [-1, 1, 0, 0], [1, -1, 0, 1], [0, -1, 0, 1]],
    [[1, 1, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 0], [0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 1, 1]],
    provenance="known scheme (Winograd)")

STRASSEN = Scheme.of(
    [[1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0], [-1, 0, 1, 0], [0, 1, 0, -1]],
    [[1, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, -1], [-1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]],
    [[1, 0, 0, 1], [0, 0, 1, -1], [0, 1, 0, 1], [1, 0, 1, 0], [-1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]],
    provenance="known scheme (Strassen)")

# Howell-Lafon type: the factor 1/2 sits on the weight side (U).
HOWELL_LAFON = Scheme.of(
    [[0, 0, -1, 1], [1, 1, 0, 0], [1, -1, 0, 0], [0, 0, 1, 1],
     ["0", "-1/2", "0", "1/2"], ["0", "1/2", "0", "1/2"], ["1/2", "0", "1/2", "0"], ["1/2", "0", "-1/2", "0"]],
    [[0, 0, 1, -1], [1, 1, 0, 0], [0, 0, 1, 1], [1, -1, 0, 0],
     [0, 1, -1, 0], [0, 1, 1, 0], [1, 0, 0, -1], [1, 0, 0, 1]],
    [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
     [1, 1, 1, 1], [-1, -1, 1, 1], [1, -1, 1, -1], [1, -1, -1, 1]],
    provenance="known scheme (Howell-Lafon)")


def power_polynomial(T: np.ndarray):
    """The low coefficients of f when T is exactly Q[t]/(f) in the power basis, else None."""
    n = T.shape[0]
    if n < 2:
        return None
    for j in range(n):
        for k in range(n):
            want = Fraction(int(j == k))
            if T[0, j, k] != want or T[j, 0, k] != want:
                return None
    for j in range(1, n - 1):
        if any(T[1, j, k] != Fraction(int(k == j + 1)) for k in range(n)):
            return None
    f = [-T[1, n - 1, k] for k in range(n)]
    return f if np.all(power_tensor(f) == T) else None


def irreducible(f) -> bool:
    """The monic polynomial with low coefficients f is irreducible over Q."""
    import sympy

    t = sympy.Symbol("t")
    coeffs = [sympy.Integer(1)] + [sympy.Rational(c.numerator, c.denominator) for c in reversed(f)]
    return bool(sympy.Poly(coeffs, t, domain="QQ").is_irreducible)


def _points(count: int) -> list[tuple[int, int]]:
    """Homogeneous evaluation points (p, q): 0, infinity, +-1, +-2, +-1/2, +-3, ..."""
    pts = [(0, 1), (1, 0)]
    k = 1
    while len(pts) < count:
        for p, q in ((k, 1), (-k, 1), (1, k + 1), (-1, k + 1)):
            if (p, q) not in pts and len(pts) < count and not (q > 1 and any(p * q2 == p2 * q for p2, q2 in pts)):
                pts.append((p, q))
        k += 1
    return pts[:count]


def toom_cook(f) -> Scheme:
    """The rank-(2n-1) scheme for Q[t]/(f): evaluate, multiply, interpolate, reduce mod f."""
    n = len(f)
    m = 2 * n - 1
    pts = _points(m)
    U = fraction_array([[p ** i * q ** (n - 1 - i) for i in range(n)] for p, q in pts])
    E = fraction_array([[p ** k * q ** (m - 1 - k) for k in range(m)] for p, q in pts])
    red = power_tensor(f)[:, :, :]                                        # rows t^k mod f for k < 2n - 1
    R = zeros(n, m)
    for k in range(m):
        i, j = min(k, n - 1), k - min(k, n - 1)
        R[:, k] = red[i, j, :]
    W = R.dot(inverse(E)).T
    return Scheme(U, U.copy(), W, f"known scheme (Toom-Cook, {m} points)")


def octonion_tensor() -> np.ndarray:
    """The octonions as the Cayley-Dickson double of H (1, i, j, k) with l^2 = -1 and the standard conjugation:
    basis (1, i, j, k, l, il, jl, kl) (the built-in O, algebra_spec/octonions.py)."""
    conj = -identity(4)
    conj[0, 0] = Fraction(1)
    return cayley_dickson_tensor(quaternion_tensor(), Fraction(-1), conj)


@lru_cache(maxsize=None)
def _library() -> dict[tuple, tuple[str, np.ndarray]]:
    """Canonical tensor key -> (library name, tensor)."""
    entries = {"M3R": matrix_tensor(3), "M4R": matrix_tensor(4), "O": octonion_tensor()}
    assert set(entries) == set(SCHEME_LIBRARY)       # the build digest covers exactly these files
    return {tensor_key(T): (name, T) for name, T in entries.items()}


@lru_cache(maxsize=None)
def _library_file(name: str) -> Scheme | None:
    """The stored scheme of a library algebra, verified exactly against its canonical tensor (None when the file
    is missing, unreadable or wrong)."""
    path = SCHEME_LIBRARY_DIR / f"{name}.json"
    T = next(T for n, T in _library().values() if n == name)
    try:
        data = json.loads(path.read_text())
        s = from_json(data, dim=T.shape[0])
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError, InexactNumberError):
        return None
    if not s.verify(T):
        return None
    return s.with_provenance(f"library {name}: {s.provenance}")


def library_scheme(T: np.ndarray) -> Scheme | None:
    """The scheme library's entry for exactly this tensor (see the module docstring), or None."""
    if T.shape[0] not in (8, 9, 16):
        return None
    hit = _library().get(tensor_key(T))
    return None if hit is None else _library_file(hit[0])


def known_scheme(T: np.ndarray) -> Scheme | None:
    """A known scheme for exactly this tensor, or None (see the module docstring)."""
    d = T.shape[0]
    if d == 4 and np.all(T == matrix_tensor(2)):
        return WINOGRAD
    if d == 4 and np.all(T == quaternion_tensor()):
        return HOWELL_LAFON
    lib = library_scheme(T)
    if lib is not None:
        return lib
    f = power_polynomial(T)
    if f is not None:
        return toom_cook(f)
    return None
