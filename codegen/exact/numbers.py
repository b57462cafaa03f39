"""The one number policy of the exact core: every structure constant and scheme coefficient is a `Fraction`.

`to_fraction` accepts exact rationals only (int, Fraction, numpy integers, SymPy Rationals, and strings such as
'-1/2' as stored in scheme files).  Floats, bools and irrational numbers are refused with `InexactNumberError`:
nothing is ever silently rationalised (user input is checked earlier, at the spec boundary, with a message naming
the file and algebra; this is the last guard).
"""
from __future__ import annotations

from fractions import Fraction
from math import gcd, lcm
from typing import Any, Iterable, Sequence

import numpy as np

from ..contract.manifest import fraction_str

__all__ = ["InexactNumberError", "to_fraction", "fraction_array", "zeros", "identity", "integer_form",
           "fraction_str", "exact_dot", "content", "primitive_integer", "UnrepresentableNumberError", "FLOAT32_MAX",
           "FLOAT32_MIN_NORMAL", "require_representable"]


class InexactNumberError(TypeError):
    """A value that is not an exact rational number reached the exact core."""


class UnrepresentableNumberError(ValueError):
    """An exact coefficient that a kernel's floating-point arithmetic cannot hold to full relative precision."""


#: the largest finite float32, (2 - 2^-23) * 2^127, and the smallest normal one, 2^-126 (exact)
FLOAT32_MAX = Fraction((2 ** 24 - 1) * 2 ** 104)
FLOAT32_MIN_NORMAL = Fraction(1, 2 ** 126)


def require_representable(c: Fraction, what: str = "coefficient") -> Fraction:
    """`c` itself when every generated kernel can use it: zero, or a magnitude within float32's normal range
    [2^-126, (2 - 2^-23) * 2^127] (about 1.2e-38 to 3.4e38), so that its float32 and float64 values are finite,
    not subnormal and correct to the type's rounding.  Else UnrepresentableNumberError naming `what`."""
    c = Fraction(c)
    if c == 0 or FLOAT32_MIN_NORMAL <= abs(c) <= FLOAT32_MAX:
        return c
    size = "too large" if abs(c) > FLOAT32_MAX else "too small"
    text = fraction_str(c)
    if len(text) > 40:
        text = f"{text[:18]}...{text[-18:]} ({len(text)} characters)"
    raise UnrepresentableNumberError(
        f"{what} {text} is {size} for the generated kernels: a nonzero coefficient must have a magnitude between "
        f"2^-126 (about 1.18e-38) and 3.40e38 (float32's normal range), so that float32 and float64 hold it to "
        f"full precision; rescale the basis (e.g. use i/10**10 as a basis element instead of i)")


def to_fraction(value: Any) -> Fraction:
    """An exact rational as a Fraction; InexactNumberError for floats, bools, irrationals and non-numbers."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise InexactNumberError(f"expected a number, got bool {value!r}")
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    if isinstance(value, (float, np.floating)):
        raise InexactNumberError(f"non-exact number {value!r} (a float); write it as a fraction such as '1/2'")
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise InexactNumberError(f"cannot read {value!r} as an exact rational number") from None
    if getattr(value, "is_Rational", False):       # SymPy Integer / Rational (no SymPy import needed)
        return Fraction(int(value.p), int(value.q))
    if getattr(value, "is_number", False):
        raise InexactNumberError(f"{value} is not a rational number (only exact rationals are supported)")
    raise InexactNumberError(f"expected an exact rational number, got {type(value).__name__} {value!r}")


def fraction_array(values: Any) -> np.ndarray:
    """Nested sequences / arrays of exact rationals -> numpy object array of Fraction (same shape)."""
    arr = np.asarray(values, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    out.reshape(-1)[:] = [to_fraction(v) for v in arr.reshape(-1)]
    return out


def zeros(*shape: int) -> np.ndarray:
    """Object array of Fraction(0)."""
    out = np.empty(shape, dtype=object)
    out.reshape(-1)[:] = [Fraction(0)] * int(np.prod(shape, dtype=np.int64))
    return out


def identity(n: int) -> np.ndarray:
    out = zeros(n, n)
    for i in range(n):
        out[i, i] = Fraction(1)
    return out


def integer_form(arr: np.ndarray, *, int64: bool = True) -> tuple[np.ndarray, int]:
    """(N, D) with arr == N / D exactly.  N is int64 when its entries are small (|n| < 2^20) and int64=True
    (so O(d^5) contractions stay exact in int64), else an object array of Python ints."""
    flat = arr.reshape(-1)
    den = 1
    for v in flat:
        den = lcm(den, v.denominator)
    ints = [v.numerator * (den // v.denominator) for v in flat]
    if int64 and max((abs(v) for v in ints), default=0) < 2**20:
        return np.array(ints, dtype=np.int64).reshape(arr.shape), den
    out = np.empty(len(ints), dtype=object)
    out[:] = ints
    return out.reshape(arr.shape), den


def exact_dot(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B for Fraction matrices, exactly, by one integer product on common denominators (much faster than
    numpy's object dot over Fractions)."""
    (Na, Da), (Nb, Db) = integer_form(A, int64=False), integer_form(B, int64=False)
    N = Na.dot(Nb)
    D = Da * Db
    out = np.empty(N.shape, dtype=object)
    out.reshape(-1)[:] = [Fraction(int(v), D) for v in N.reshape(-1)]
    return out


def content(values: Iterable[Fraction]) -> Fraction:
    """gcd of the numerators over lcm of the denominators (1 for a zero vector): values / content is a
    primitive integer vector up to sign."""
    num, den = 0, 1
    for x in values:
        if x:
            num = gcd(num, x.numerator)
            den = lcm(den, x.denominator)
    return Fraction(num, den) if num else Fraction(1)


def primitive_integer(v: Sequence[Fraction]) -> list[Fraction]:
    """Scale v to a primitive integer vector whose first nonzero entry is positive (zero vector unchanged)."""
    c = content(v)
    first = next((x for x in v if x), None)
    if first is None:
        return list(v)
    if first < 0:
        c = -c
    return [x / c for x in v]


