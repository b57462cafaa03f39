"""Known optimal schemes, recognised by the exact structure tensor (not by name).

`known_scheme(T)` returns a verified scheme when T is exactly one of:
  - M_2 in the row-major matrix-unit basis (`codegen.exact.matrix_tensor(2)`): Winograd's variant of Strassen, 7;
  - the quaternions in the basis (1, i, j, k), i^2 = j^2 = k^2 = ijk = -1: Howell-Lafon, 8;
  - a monogenic algebra Q[t]/(f) in the power basis (1, t, ..., t^(n-1)), f monic of degree n >= 2 (the complex
    numbers, Q(zeta_5), the dual numbers, ...): Toom-Cook, 2n - 1 (evaluation at 2n - 1 points, exact
    interpolation, reduction mod f).
These are the leaves the structural route (`codegen.schemes.structure`) and the builders (`codegen.spec.builders`)
reduce algebras to; everything else is composed from them.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..exact import fraction_array, inverse, matrix_tensor, power_tensor, quaternion_tensor, zeros
from .scheme import Scheme

__all__ = ["known_scheme", "power_polynomial", "irreducible", "toom_cook", "WINOGRAD", "STRASSEN", "HOWELL_LAFON"]

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


def known_scheme(T: np.ndarray) -> Scheme | None:
    """A known optimal scheme for exactly this tensor, or None (see the module docstring)."""
    d = T.shape[0]
    if d == 4 and np.all(T == matrix_tensor(2)):
        return WINOGRAD
    if d == 4 and np.all(T == quaternion_tensor()):
        return HOWELL_LAFON
    f = power_polynomial(T)
    if f is not None:
        return toom_cook(f)
    return None
