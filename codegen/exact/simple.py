"""Simple algebras over Q, exactly: A = M_n(Q) (x) D with D a division algebra, and D recognised.

Conventions as in `codegen.exact.tensors`; every result is checked exactly (`change_basis(T, P)` equals the claimed
tensor) before it is returned, and None means "not recognised" (never a wrong answer).

* `primitive_idempotents` -- split the unit into orthogonal idempotents whose corners e A e do not split further:
  commutative corners are fields; four-dimensional central corners are quaternion algebras, split or not decided
  by the norm form (a pure quaternion squaring to a positive rational square gives an idempotent); larger corners
  are split with elements whose minimal polynomial factors over Q.
* `simple_decomposition` -- from those idempotents the matrix units E_ab and the centraliser D of the E_ab, so that
  A = M_n(Q) (x) D: the basis E_ab c_t (Kronecker order) gives exactly `tensor_product(matrix_tensor(n), T_D)`.
* `quaternion_basis` -- a basis (1, i, j, k) with i^2 = j^2 = -1, ij = -ji = k of a quaternion algebra isomorphic to
  H (found by a bounded search of small integer combinations of an orthogonal basis of the pure quaternions).
* `field_power_basis` -- for a field (commutative simple algebra), the power basis of a primitive element.
* `matrix_unit_basis` -- A = M_n(Q) exactly (D = Q).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from itertools import product as cartesian
from math import isqrt
from typing import Sequence

import numpy as np

from .linalg import inverse, solve, span_basis
from .numbers import fraction_array, primitive_integer
from .tensors import (basis_vector, centre, change_basis, matrix_tensor, power_tensor, product, quaternion_tensor,
                      tensor_key, tensor_product, unit)
from .wedderburn import crt_idempotents, minimal_polynomial, random_combination, subalgebra_tensor, trace_vector

__all__ = ["SimpleDecomposition", "primitive_idempotents", "simple_decomposition", "quaternion_basis",
           "quaternion_idempotent", "field_power_basis", "matrix_unit_basis", "columns", "orthogonal_basis",
           "orthogonal_complement", "pure_basis", "rational_sqrt"]

SEARCH_BOUND = 8          # |coefficients| of the small integer combinations tried in the norm-form searches


def columns(vectors: Sequence[Sequence[Fraction]]) -> np.ndarray:
    """The matrix whose columns are the given vectors."""
    return fraction_array([list(col) for col in zip(*vectors)])


def _combine(coeffs, vectors) -> list[Fraction]:
    out = [Fraction(0)] * len(vectors[0])
    for c, v in zip(coeffs, vectors):
        if c:
            out = [a + c * b for a, b in zip(out, v)]
    return out


def rational_sqrt(q: Fraction) -> Fraction | None:
    """sqrt(q) when q >= 0 is the square of a rational, else None."""
    if q < 0:
        return None
    a, b = isqrt(q.numerator), isqrt(q.denominator)
    return Fraction(a, b) if a * a == q.numerator and b * b == q.denominator else None


def _scalar(v: Sequence[Fraction], one: Sequence[Fraction]) -> Fraction | None:
    """c with v == c * one, or None."""
    p = next(i for i, x in enumerate(one) if x)
    c = v[p] / one[p]
    return c if all(a == c * b for a, b in zip(v, one)) else None


def _is_commutative(T, basis) -> bool:
    return all(product(T, a, b) == product(T, b, a) for i, a in enumerate(basis) for b in basis[i + 1:])


# ---------------------------------------------------------------------------- orthogonal bases
def orthogonal_basis(T, vectors, one) -> list[tuple[list[Fraction], Fraction]] | None:
    """An orthogonal basis of span(vectors) for the form <x, y> = (xy + yx)/2 (a multiple of `one` on pure
    elements of a quaternion or octonion algebra), each vector with its square <v, v>, scaled so that the square
    is a square-free integer.  None when the form is not scalar or degenerate on the span."""
    def form(x, y):
        return _scalar([(a + b) / 2 for a, b in zip(product(T, x, y), product(T, y, x))], one)

    todo = [list(v) for v in vectors if any(v)]
    out = []
    while todo:
        pick = None
        for cand in todo + [[a + b for a, b in zip(x, y)] for i, x in enumerate(todo) for y in todo[i + 1:]]:
            q = form(cand, cand)
            if q is None:
                return None
            if q:
                pick = (cand, q)
                break
        if pick is None:
            return None
        v, q = pick
        # scale: q * den^2 is an integer; divide out its largest square factor
        v = [x * q.denominator for x in v]
        q = q * q.denominator ** 2
        s = _square_part(q.numerator)
        v = [x / s for x in v]
        q = q / (s * s)
        out.append((v, q))
        rest = []
        for w in todo:
            c = form(w, v)
            if c is None:
                return None
            w = [a - (c / q) * b for a, b in zip(w, v)]
            if any(w):
                rest.append(w)
        todo = span_basis(rest, len(v))
    return out


def _square_part(n: int) -> int:
    """The largest s with s^2 dividing n."""
    n, s, f = abs(n), 1, 2
    while f * f <= n:
        while n % (f * f) == 0:
            n //= f * f
            s *= f
        f += 1
    return s


def _small_vectors(k: int, bound: int):
    """Nonzero integer vectors of length k, by largest entry, then in a fixed order."""
    for m in range(1, bound + 1):
        for c in cartesian(range(-m, m + 1), repeat=k):
            if max(abs(x) for x in c) == m:
                yield c


def _represent(norms: Sequence[Fraction], sign: int, bound: int):
    """Small integers c with sum c_t^2 norms_t = sign * s^2 (s rational > 0): (c, s), or None."""
    for c in _small_vectors(len(norms), bound):
        s = rational_sqrt(sign * sum((x * x * q for x, q in zip(c, norms)), Fraction(0)))
        if s:
            return c, s
    return None


# ------------------------------------------------------------------------------- quaternions
def pure_basis(Q, one) -> list[list[Fraction]]:
    """A basis of the trace-zero elements (trace of left multiplication)."""
    tau = trace_vector(Q)
    t1 = sum((t * o for t, o in zip(tau, one)), Fraction(0))
    d = Q.shape[0]
    pure = []
    for i in range(d):
        b = basis_vector(d, i)
        t = sum((x * y for x, y in zip(tau, b)), Fraction(0)) / t1
        pure.append([x - t * o for x, o in zip(b, one)])
    return span_basis(pure, d)


def quaternion_idempotent(Q: np.ndarray, bound: int = SEARCH_BOUND) -> list[Fraction] | None:
    """An idempotent e != 0, 1 of a four-dimensional central simple algebra Q (then Q = M2(Q)), or None when the
    norm form represents no square within the search bound (for a division algebra there is none)."""
    one = unit(Q)
    orth = orthogonal_basis(Q, pure_basis(Q, one), one)
    if orth is None or len(orth) != 3:
        return None
    vecs, norms = [v for v, _ in orth], [q for _, q in orth]
    hit = _represent(norms, 1, bound)
    if hit is None:
        return None
    c, s = hit
    x = [a / s for a in _combine(c, vecs)]                    # x^2 = 1, x pure
    return [(a + b) / 2 for a, b in zip(one, x)]


def quaternion_basis(Q: np.ndarray, bound: int = SEARCH_BOUND) -> np.ndarray | None:
    """P (columns 1, i, j, k) with change_basis(Q, P) == quaternion_tensor(), or None."""
    if Q.shape[0] != 4:
        return None
    one = unit(Q)
    if one is None:
        return None
    orth = orthogonal_basis(Q, pure_basis(Q, one), one)
    if orth is None or len(orth) != 3:
        return None
    hit = _represent([q for _, q in orth], -1, bound)
    if hit is None:
        return None
    c, s = hit
    i = [a / s for a in _combine(c, [v for v, _ in orth])]
    # the pure elements orthogonal to i: project and re-orthogonalise
    comp = orthogonal_basis(Q, orthogonal_complement(Q, [v for v, _ in orth], i, one), one)
    if comp is None or len(comp) != 2:
        return None
    hit = _represent([q for _, q in comp], -1, 4 * bound)
    if hit is None:
        return None
    c, s = hit
    j = [a / s for a in _combine(c, [v for v, _ in comp])]
    P = columns([one, i, j, product(Q, i, j)])
    try:
        Pinv = inverse(P)
    except ValueError:
        return None
    return P if np.all(change_basis(Q, P, Pinv) == quaternion_tensor()) else None


def orthogonal_complement(Q, vectors, x, one) -> list[list[Fraction]]:
    """The vectors projected orthogonally to x for <a, b> = (ab + ba)/2 (a basis of the result)."""
    def form(a, b):
        return _scalar([(p + q) / 2 for p, q in zip(product(Q, a, b), product(Q, b, a))], one)
    qx = form(x, x)
    out = [[a - (form(w, x) / qx) * b for a, b in zip(w, x)] for w in vectors]
    return span_basis(out, len(x))


# ---------------------------------------------------------------------------- idempotents
def _corner_basis(T, e) -> list[list[Fraction]]:
    d = T.shape[0]
    return span_basis([list(e)] + [primitive_integer(product(T, product(T, e, basis_vector(d, i)), e))
                                   for i in range(d)], d)


def _corner_candidates(T, e, rng: random.Random, max_random: int):
    """Elements of the corner e A e: projected basis vectors, sums/differences of pairs, then random."""
    d = T.shape[0]
    units = [basis_vector(d, i) for i in range(d)]
    proj = [product(T, product(T, e, b), e) for b in units]
    basis = span_basis(proj, d)
    seen = set()

    def fresh(v):
        key = tuple(v)
        if not any(v) or key in seen:
            return False
        seen.add(key)
        return True

    for v in proj:
        if fresh(v):
            yield v
    for i in range(len(basis)):
        for j in range(i + 1, len(basis)):
            for s in (1, -1):
                v = [a + s * b for a, b in zip(basis[i], basis[j])]
                if fresh(v):
                    yield v
    for t in range(max_random):
        v = random_combination(rng, basis, 1 + t // 50)
        if fresh(v):
            yield v


def _split(T, e, rng: random.Random, max_tries: int) -> list[list[Fraction]] | None:
    """Orthogonal idempotents (two or more) summing to e, or None when the corner e A e was not split."""
    corner = _corner_basis(T, e)
    k = len(corner)
    if k == 1 or _is_commutative(T, corner):
        return None                                          # a field: no idempotents but 0 and e
    if k == 4:
        Q = subalgebra_tensor(T, corner)
        if Q is not None and len(centre(Q)) == 1:
            f = quaternion_idempotent(Q)
            if f is None:
                return None
            fa = _combine(f, corner)
            return [fa, [a - b for a, b in zip(e, fa)]]
    for x in _corner_candidates(T, e, rng, max_tries):
        mp = minimal_polynomial(T, x, e)
        if len(mp) <= 2:
            continue
        pieces, _ = crt_idempotents(T, x, e, mp)
        if len(pieces) > 1:
            return pieces
    return None


def primitive_idempotents(T, *, seed: int = 0, max_tries: int = 200) -> list[list[Fraction]] | None:
    """Orthogonal idempotents summing to the unit whose corners did not split further (for a simple algebra:
    e_i A e_i = D, the division algebra of A = M_n(D), when every split was found).  None without a unit."""
    one = unit(T)
    if one is None:
        return None
    rng = random.Random(seed)
    todo, final = [one], []
    while todo:
        e = todo.pop(0)
        pieces = _split(T, e, rng, max_tries)
        if pieces is None:
            final.append(e)
        else:
            todo = pieces + todo
    return final


# ---------------------------------------------------------------------------- decomposition
@dataclass(frozen=True)
class SimpleDecomposition:
    """A = M_n(Q) (x) D: change_basis(T, P) == tensor_product(matrix_tensor(n), D) (basis E_ab c_t, index
    (a n + b) k + t, c_0 the unit)."""

    P: np.ndarray
    Pinv: np.ndarray
    n: int
    D: np.ndarray


def _matrix_units(T, idems) -> list[list[list[Fraction]]] | None:
    d = T.shape[0]
    n = len(idems)
    units = [basis_vector(d, i) for i in range(d)]
    E = [[None] * n for _ in range(n)]
    E[0][0] = idems[0]
    for j in range(1, n):
        a = next((primitive_integer(v) for v in (product(T, product(T, idems[0], b), idems[j]) for b in units)
                  if any(v)), None)
        back = span_basis([product(T, product(T, idems[j], b), idems[0]) for b in units], d)
        if a is None or not back:
            return None
        # f in e_j A e_1 with a f = e_1
        cols = [product(T, a, f) for f in back]
        c = solve([[col[i] for col in cols] for i in range(d)], idems[0])
        if c is None:
            return None
        E[0][j], E[j][0] = a, _combine(c, back)
        if product(T, E[j][0], a) != list(idems[j]):
            return None
    for i in range(1, n):
        for j in range(1, n):
            E[i][j] = product(T, E[i][0], E[0][j])
    return E


_MEMO: dict[tuple, SimpleDecomposition | None] = {}


def simple_decomposition(T: np.ndarray, *, seed: int = 0) -> SimpleDecomposition | None:
    """A = M_n(Q) (x) D with n >= 2 for a simple unital associative algebra (see the module docstring); None when
    no idempotent splits the unit (a division algebra) or the result does not check.  Memoised per tensor."""
    key = (tensor_key(T), seed)
    if key not in _MEMO:
        _MEMO[key] = _decompose(T, seed)
    return _MEMO[key]


def _decompose(T, seed) -> SimpleDecomposition | None:
    idems = primitive_idempotents(T, seed=seed)
    if idems is None or len(idems) < 2:
        return None
    n = len(idems)
    corners = [_corner_basis(T, e) for e in idems]
    k = len(corners[0])
    if any(len(c) != k for c in corners) or n * n * k != T.shape[0]:
        return None
    E = _matrix_units(T, idems)
    if E is None:
        return None
    # D = the centraliser of the E_ab: c = sum_a E_a1 x E_1a for x in the corner e_1 A e_1 (unit first)
    cs = [_combine([1] * n, [product(T, product(T, E[a][0], x), E[0][a]) for a in range(n)]) for x in corners[0]]
    cols = [product(T, E[a][b], c) for a in range(n) for b in range(n) for c in cs]
    P = columns(cols)
    try:
        Pinv = inverse(P)
    except ValueError:
        return None
    D = subalgebra_tensor(T, cs)
    if D is None or not np.all(change_basis(T, P, Pinv) == tensor_product(matrix_tensor(n), D)):
        return None
    return SimpleDecomposition(P, Pinv, n, D)


def matrix_unit_basis(T, *, seed: int = 0, max_tries: int = 400):
    """(P, Pinv, n) with change_basis(T, P, Pinv) == matrix_tensor(n) when T is exactly isomorphic to M_n(Q),
    n >= 2; else None.  (`max_tries` is kept for callers; the split of each corner is bounded by itself.)"""
    dec = simple_decomposition(T, seed=seed)
    if dec is None or dec.D.shape[0] != 1 or dec.D[0, 0, 0] != 1:
        return None
    return dec.P, dec.Pinv, dec.n


# ------------------------------------------------------------------------------------- fields
def _height(mp) -> int:
    return max(max(abs(c.numerator), c.denominator) for c in mp)


def field_power_basis(T: np.ndarray) -> tuple[np.ndarray, list[Fraction]] | None:
    """For a field of degree k >= 2 (a commutative algebra without zero divisors): (P, f) with P = [1, x, ...,
    x^(k-1)] for a primitive element x and change_basis(T, P) == power_tensor(f).  Degree 2 is normalised to
    x^2 = -1 (the complex numbers) when possible, else x^2 = a square-free integer.  None if not found."""
    d = T.shape[0]
    one = unit(T)
    if d < 2 or one is None:
        return None
    units = [basis_vector(d, i) for i in range(d)]
    cands = units + [[a + s * b for a, b in zip(units[i], units[j])] for i in range(d) for j in range(i + 1, d)
                     for s in (1, -1)]
    best = None
    for x in cands:
        mp = minimal_polynomial(T, x, one)
        if len(mp) == d + 1 and (best is None or _height(mp) < _height(best[1])):
            best = (x, mp)
    if best is None:
        return None
    x, mp = best
    if d == 2:                                             # x^2 + b x + c = 0 -> (x + b/2)^2 = b^2/4 - c
        b, c = mp[1], mp[0]
        y = [a + (b / 2) * o for a, o in zip(x, one)]
        delta = b * b / 4 - c
        s = rational_sqrt(-delta)
        if s:
            y = [a / s for a in y]
        else:
            num = delta.numerator * delta.denominator      # delta = num / den^2 after scaling y by den
            y = [a * delta.denominator for a in y]
            sq = _square_part(num)
            y = [a / sq for a in y]
        x = y
        mp = minimal_polynomial(T, x, one)
    powers = [list(one)]
    for _ in range(d - 1):
        powers.append(product(T, x, powers[-1]))
    f = mp[:-1]
    P = columns(powers)
    try:
        Pinv = inverse(P)
    except ValueError:
        return None
    return (P, f) if np.all(change_basis(T, P, Pinv) == power_tensor(f)) else None

