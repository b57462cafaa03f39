"""Exact splitting of an algebra into a direct product of two-sided ideals (Wedderburn / CRT), over Q.

Conventions (REFERENCE.md §0): a structure tensor ``T`` is a numpy object array of ``Fraction`` of shape
(d, d, d) with ``(x*y)_k = sum_ij T[i,j,k] x_i y_j`` (x is the left factor).  A basis change ``x = P x'``
(columns of P = new basis vectors in old coordinates) gives

    T'[a,b,c] = sum_ijk P[i,a] P[j,b] T[i,j,k] Pinv[c,k]

and a scheme (U', V', W') of T' gives the scheme U = U' Pinv, V = V' Pinv, W = W' P^T of T
(:func:`scheme_to_original`).

Main entry points

* :func:`split_algebra` -- primitive central idempotents e_1..e_t of a unital associative algebra (found
  by factoring minimal polynomials of central elements over Q and the polynomial CRT), the basis change P
  whose columns are bases of the ideals A*e_i, and the block structure tensors.  ``None`` when there is
  nothing to split (one block, no unit, or not associative).
* :func:`matrix_unit_basis` -- for a central simple block isomorphic to M_n(Q) (found constructively: rank-1
  idempotents from elements whose minimal polynomial factors over Q), the exact basis change to matrix
  units E_11, E_12, ..., E_nn (row-major), in which the block is exactly :func:`standard_matrix_tensor`.
* :func:`lower_bound` -- a proven lower bound on the rank over Q (flattening ranks; Alder-Strassen
  2d - t for associative unital algebras), used by the search to stop early.

Everything here is exact (Fraction arithmetic); nothing is decided by floats.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from fractions import Fraction
from math import gcd, isqrt, lcm
from typing import Sequence

import numpy as np

from .exact import primitive_integer

__all__ = [
    "as_fraction_tensor", "fraction_matrix", "mul", "left_mult_matrix", "find_unit", "centre",
    "is_associative", "radical_dimension", "transform_tensor", "scheme_to_original",
    "scheme_to_new_basis", "direct_sum", "naive_scheme", "verify", "scheme_tensor",
    "central_idempotents", "Split", "split_algebra", "matrix_unit_basis", "standard_matrix_tensor",
    "lower_bound", "inverse", "rank_of",
]


# --------------------------------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------------------------------
def _frac(v) -> Fraction:
    if isinstance(v, Fraction):
        return v
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("bool is not a structure constant")
    if isinstance(v, (int, np.integer)):
        return Fraction(int(v))
    if hasattr(v, "is_Rational"):  # sympy number
        if v.is_Rational:
            return Fraction(int(v.p), int(v.q))
        raise ValueError(f"irrational constant {v!r} is not supported")
    if isinstance(v, (float, np.floating)):
        f = Fraction(float(v))
        if f.denominator > 2**20:
            raise ValueError(f"float {v!r} is not an exact simple rational")
        return f
    return Fraction(v)


def as_fraction_tensor(T) -> np.ndarray:
    """Any array-like of exact numbers -> numpy object array of Fraction (same shape)."""
    arr = np.asarray(T, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for n, v in enumerate(arr.reshape(-1)):
        flat[n] = _frac(v)
    return out


fraction_matrix = as_fraction_tensor


def _obj(rows) -> np.ndarray:
    rows = [list(r) for r in rows]
    out = np.empty((len(rows), len(rows[0]) if rows else 0), dtype=object)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            out[i, j] = v
    return out


def _zeros(*shape) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.reshape(-1)[:] = [Fraction(0)] * int(np.prod(shape))
    return out


def _integer_form(T: np.ndarray) -> tuple[np.ndarray, int]:
    """T = Tint / D with Tint an integer array (int64 when small enough, else python ints)."""
    D = 1
    for v in T.reshape(-1):
        D = lcm(D, v.denominator)
    ints = [int(v * D) for v in T.reshape(-1)]
    big = max((abs(x) for x in ints), default=0)
    if big and big * big * max(T.shape) * 4 >= 2**62:
        arr = np.empty(len(ints), dtype=object)
        arr[:] = ints
        return arr.reshape(T.shape), D
    return np.array(ints, dtype=np.int64).reshape(T.shape), D


def _int_objects(M: np.ndarray) -> tuple[np.ndarray, int]:
    """M = Mint / D with Mint an object array of python ints (exact, much faster than Fraction)."""
    D = 1
    for v in M.reshape(-1):
        D = lcm(D, v.denominator)
    out = np.empty(M.shape, dtype=object)
    out.reshape(-1)[:] = [v.numerator * (D // v.denominator) for v in M.reshape(-1)]
    return out, D


def _from_ints(X: np.ndarray, D: int) -> np.ndarray:
    out = np.empty(X.shape, dtype=object)
    out.reshape(-1)[:] = [Fraction(int(v), D) for v in X.reshape(-1)]
    return out


# --------------------------------------------------------------------------------------------------
# exact linear algebra (lists of Fractions)
# --------------------------------------------------------------------------------------------------
class _Echelon:
    """Incremental semi-echelon basis; tracks each row as a combination of the inserted vectors."""

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
        """Insert v. Returns None if v was independent, else the dependency combination
        (coefficients c_t with sum_t c_t v_t = 0, last coefficient 1) when tracking, else True."""
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


def _rref(rows: list[list[Fraction]], ncols: int) -> tuple[list[list[Fraction]], list[int]]:
    rows = [list(r) for r in rows if any(r)]
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


def _nullspace(rows: list[list[Fraction]], ncols: int) -> list[list[Fraction]]:
    R, piv = _rref(rows, ncols)
    free = [c for c in range(ncols) if c not in piv]
    basis = []
    for f in free:
        v = [Fraction(0)] * ncols
        v[f] = Fraction(1)
        for r, p in zip(R, piv):
            v[p] = -r[f]
        basis.append(v)
    return basis


def _solve(A: list[list[Fraction]], b: list[Fraction]) -> list[Fraction] | None:
    """One solution x of A x = b (exact), or None."""
    n = len(A[0]) if A else 0
    aug = [list(r) + [bb] for r, bb in zip(A, b)]
    R, piv = _rref(aug, n + 1)
    if n in piv:
        return None
    x = [Fraction(0)] * n
    for r, p in zip(R, piv):
        x[p] = r[n]
    return x


def rank_of(M) -> int:
    M = as_fraction_tensor(M)
    return len(_rref([list(r) for r in M], M.shape[1])[1])


def inverse(P) -> np.ndarray:
    P = as_fraction_tensor(P)
    d = P.shape[0]
    aug = [list(P[i]) + [Fraction(int(i == j)) for j in range(d)] for i in range(d)]
    R, piv = _rref(aug, 2 * d)
    if len(piv) < d or piv[:d] != list(range(d)):
        raise ValueError("matrix is singular")
    return _obj([r[d:] for r in R])


# --------------------------------------------------------------------------------------------------
# algebra primitives
# --------------------------------------------------------------------------------------------------
def mul(T: np.ndarray, x: Sequence, y: Sequence) -> list[Fraction]:
    """Exact product x*y of coordinate vectors."""
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


def left_mult_matrix(T: np.ndarray, x: Sequence) -> np.ndarray:
    """L(x)[k, j] = sum_i T[i,j,k] x_i, so that x*y = L(x) @ y."""
    d = T.shape[0]
    L = _zeros(d, d)
    for i in range(d):
        if x[i]:
            L += x[i] * T[i].T
    return L


def find_unit(T: np.ndarray) -> list[Fraction] | None:
    """The two-sided unit 1 (coordinates) or None."""
    T = as_fraction_tensor(T)
    d = T.shape[0]
    rows, rhs = [], []
    for j in range(d):
        for k in range(d):
            rows.append([T[i, j, k] for i in range(d)])  # e*b_j = b_j
            rhs.append(Fraction(int(j == k)))
            rows.append([T[j, i, k] for i in range(d)])  # b_j*e = b_j
            rhs.append(Fraction(int(j == k)))
    return _solve(rows, rhs)


def centre(T: np.ndarray) -> list[list[Fraction]]:
    """Basis of the commutative centre {z : z*x = x*z for all x} (the centre for associative T)."""
    T = as_fraction_tensor(T)
    d = T.shape[0]
    rows = []
    for j in range(d):
        for k in range(d):
            r = [T[i, j, k] - T[j, i, k] for i in range(d)]
            if any(r):
                rows.append(r)
    return _nullspace(rows, d)


def is_associative(T: np.ndarray) -> bool:
    T = as_fraction_tensor(T)
    Ti, _ = _integer_form(T)
    left = np.tensordot(Ti, Ti, axes=([2], [0]))          # [i,j,k,l] = sum_m T[i,j,m] T[m,k,l]
    right = np.tensordot(Ti, Ti, axes=([1], [2]))         # [i,l,j,k] = sum_m T[i,m,l] T[j,k,m]
    right = np.transpose(right, (0, 2, 3, 1))
    return bool(np.all(left == right))


def _trace_vector(T: np.ndarray) -> list[Fraction]:
    """tau with trace(L(y)) = tau . y."""
    d = T.shape[0]
    return [sum((T[i, j, j] for j in range(d)), Fraction(0)) for i in range(d)]


def radical_dimension(T: np.ndarray, basis: Sequence[Sequence[Fraction]] | None = None) -> int:
    """Dimension of the radical of the trace form (x, y) -> tr L(xy) on span(basis) (default: all of A).

    For an associative algebra over Q this is the Jacobson radical of A (Dickson); for a commutative
    subalgebra C of a unital associative A it is the nilradical of C.
    """
    T = as_fraction_tensor(T)
    d = T.shape[0]
    if basis is None:
        basis = [[Fraction(int(i == j)) for j in range(d)] for i in range(d)]
    tau = _trace_vector(T)
    G = [[sum((t * p for t, p in zip(tau, mul(T, a, b))), Fraction(0)) for b in basis] for a in basis]
    return len(basis) - len(_rref(G, len(basis))[1])


# --------------------------------------------------------------------------------------------------
# basis change and scheme plumbing
# --------------------------------------------------------------------------------------------------
def transform_tensor(T, P, Pinv=None) -> np.ndarray:
    """T'[a,b,c] = sum P[i,a] P[j,b] T[i,j,k] Pinv[c,k]  (x = P x')."""
    T = as_fraction_tensor(T)
    P = as_fraction_tensor(P)
    Pinv = inverse(P) if Pinv is None else as_fraction_tensor(Pinv)
    (Ti, Dt), (Pi, Dp), (Qi, Dq) = (_int_objects(M) for M in (T, P, Pinv))
    X = np.tensordot(Pi, Ti, axes=([0], [0]))      # [a,j,k] = sum_i P[i,a] T[i,j,k]
    X = np.tensordot(X, Pi, axes=([1], [0]))       # [a,k,b]
    X = np.tensordot(X, Qi, axes=([1], [1]))       # [a,b,c]
    return _from_ints(X, Dt * Dp * Dp * Dq)


def scheme_to_original(U, V, W, P, Pinv=None):
    """Scheme of T' = transform_tensor(T, P) -> scheme of T."""
    P = as_fraction_tensor(P)
    Pinv = inverse(P) if Pinv is None else as_fraction_tensor(Pinv)
    U, V, W = (as_fraction_tensor(M) for M in (U, V, W))
    return U.dot(Pinv), V.dot(Pinv), W.dot(P.T)


def scheme_to_new_basis(U, V, W, P, Pinv=None):
    """Scheme of T -> scheme of T' = transform_tensor(T, P)."""
    P = as_fraction_tensor(P)
    Pinv = inverse(P) if Pinv is None else as_fraction_tensor(Pinv)
    U, V, W = (as_fraction_tensor(M) for M in (U, V, W))
    return U.dot(P), V.dot(P), W.dot(Pinv.T)


def direct_sum(schemes: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], dims: Sequence[int]):
    """Block-diagonal concatenation: schemes of blocks of sizes dims -> scheme of their direct product."""
    d = sum(dims)
    r = sum(s[0].shape[0] for s in schemes)
    out = [_zeros(r, d) for _ in range(3)]
    row, col = 0, 0
    for (U, V, W), m in zip(schemes, dims):
        k = U.shape[0]
        for M, S in zip(out, (U, V, W)):
            M[row:row + k, col:col + m] = as_fraction_tensor(S)
        row += k
        col += m
    return tuple(out)


def naive_scheme(T):
    """The naive scheme: one product per nonzero pair (i, j)."""
    T = as_fraction_tensor(T)
    d = T.shape[0]
    pairs = [(i, j) for i in range(d) for j in range(d) if any(T[i, j])]
    U, V, W = _zeros(len(pairs), d), _zeros(len(pairs), d), _zeros(len(pairs), d)
    for s, (i, j) in enumerate(pairs):
        U[s, i] = Fraction(1)
        V[s, j] = Fraction(1)
        W[s, :] = T[i, j, :]
    return U, V, W


def scheme_tensor(U, V, W) -> np.ndarray:
    U, V, W = (as_fraction_tensor(M) for M in (U, V, W))
    r, d = U.shape
    if r == 0:
        return _zeros(d, d, d)
    (Ui, Du), (Vi, Dv), (Wi, Dw) = (_int_objects(M) for M in (U, V, W))
    KR = (Vi[:, :, None] * Wi[:, None, :]).reshape(r, d * d)
    return _from_ints(Ui.T.dot(KR).reshape(d, d, d), Du * Dv * Dw)


def verify(T, U, V, W) -> bool:
    """Exact check T[i,j,k] == sum_s U[s,i] V[s,j] W[s,k] (Fraction arithmetic)."""
    T = as_fraction_tensor(T)
    try:
        U, V, W = (as_fraction_tensor(M) for M in (U, V, W))
    except (TypeError, ValueError):
        return False
    d = T.shape[0]
    if U.ndim != 2 or U.shape[1:] != (d,) or V.shape != U.shape or W.shape != U.shape:
        return False
    return bool(np.all(scheme_tensor(U, V, W) == T))


# --------------------------------------------------------------------------------------------------
# polynomials (sympy over QQ)
# --------------------------------------------------------------------------------------------------
def _minpoly_krylov(T: np.ndarray, x: list[Fraction], e: list[Fraction]) -> list[Fraction]:
    """Minimal polynomial of x in the corner with unit e (x*e = e*x = x): the monic p of least degree
    with p(L(x)) e = 0.  Coefficients low -> high degree."""
    ech = _Echelon(len(e), track=True)
    v = list(e)
    while True:
        dep = ech.add(v)
        if dep is not None:
            return dep  # sum_t dep_t x^t = 0 with dep[-1] = 1
        v = mul(T, x, v)


def _sympy_poly(coeffs_low_high):
    import sympy

    t = sympy.Symbol("t")
    return sympy.Poly([sympy.Rational(c.numerator, c.denominator) for c in reversed(coeffs_low_high)],
                      t, domain="QQ"), t


def _poly_to_fracs(p) -> list[Fraction]:
    """sympy Poly -> coefficients high -> low as Fractions."""
    return [Fraction(int(c.p), int(c.q)) for c in p.all_coeffs()]


def _eval_poly(T, coeffs_high_low: list[Fraction], x, e) -> list[Fraction]:
    acc = [Fraction(0)] * len(e)
    for c in coeffs_high_low:
        acc = mul(T, x, acc)
        if c:
            acc = [a + c * b for a, b in zip(acc, e)]
    return acc


def _crt_idempotents(T, x, e, mp):
    """Split e by the coprime prime-power factors of the minimal polynomial mp of x (corner unit e).
    Returns (list of idempotents, list of (irreducible factor, multiplicity))."""
    import sympy

    poly, t = _sympy_poly(mp)
    _, facs = sympy.factor_list(poly)
    facs = [(sympy.Poly(f, t, domain="QQ"), m) for f, m in facs]
    if len(facs) < 2:
        return [e], facs
    out = []
    for idx, (f, m) in enumerate(facs):
        q = f ** m
        Q = sympy.Poly(1, t, domain="QQ")
        for jdx, (g, n) in enumerate(facs):
            if jdx != idx:
                Q = Q * g ** n
        s = sympy.invert(Q, q)  # s*Q = 1 mod q
        fi = (sympy.Poly(s, t, domain="QQ") * Q).rem(poly)
        out.append(_eval_poly(T, _poly_to_fracs(fi), x, e))
    return out, facs


# --------------------------------------------------------------------------------------------------
# central idempotents and the split
# --------------------------------------------------------------------------------------------------
def _span_basis(vectors, d, limit: int | None = None) -> list[list[Fraction]]:
    """Greedy basis of span(vectors) taken from the vectors in order (stops at ``limit`` vectors)."""
    ech = _Echelon(d)
    out = []
    for v in vectors:
        if limit is not None and len(out) >= limit:
            break
        if any(v) and ech.add(v) is None:
            out.append(list(v))
    return out


def _random_combo(rng: random.Random, basis, bound: int):
    d = len(basis[0])
    while True:
        c = [rng.randint(-bound, bound) for _ in basis]
        if any(c):
            break
    v = [Fraction(0)] * d
    for ci, b in zip(c, basis):
        if ci:
            v = [a + ci * bb for a, bb in zip(v, b)]
    return v


def central_idempotents(T, *, seed: int = 0, max_tries: int = 40):
    """Orthogonal central idempotents summing to 1 that split a unital associative algebra over Q.

    Returns (idempotents, certified) or None when A has no unit or is not associative.  ``certified`` is
    True when each idempotent is proven primitive in the centre: Z e / rad(Z e) is the field
    Q[t]/(p) for the square-free part p of the minimal polynomial of an element of Z e, whose degree
    equals dim(Z e / rad Z e).
    """
    T = as_fraction_tensor(T)
    d = T.shape[0]
    one = find_unit(T)
    if one is None or not is_associative(T):
        return None
    Zb = centre(T)
    rng = random.Random(seed)
    todo = [one]
    done: list[tuple[list[Fraction], bool]] = []
    while todo:
        e = todo.pop(0)
        Ze = _span_basis([mul(T, z, e) for z in Zb], d)
        m = len(Ze)
        n = m - (radical_dimension(T, Ze) if m > 1 else 0)
        if n <= 1:
            done.append((e, True))
            continue
        split, cert = False, False
        for attempt in range(max_tries):
            z = _random_combo(rng, Ze, 1 + attempt // 4)
            mp = _minpoly_krylov(T, z, e)
            pieces, facs = _crt_idempotents(T, z, e, mp)
            if len(pieces) > 1:
                todo.extend(pieces)
                split = True
                break
            if facs and facs[0][0].degree() == n:
                cert = True
                break
        if not split:
            done.append((e, cert))
    return [e for e, _ in done], all(c for _, c in done)


@dataclass
class Split:
    """A = A e_1 x ... x A e_t.  Columns of P are the new basis (blocks consecutive, in order)."""

    P: np.ndarray
    Pinv: np.ndarray
    blocks: list[np.ndarray]
    dims: list[int]
    idempotents: list[list[Fraction]]
    primitive: bool  # every idempotent proven primitive in Z(A)
    offsets: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "+".join(str(m) for m in self.dims)


def _content(T: np.ndarray) -> Fraction:
    num, den = 0, 1
    for v in T.reshape(-1):
        if v:
            num = gcd(num, v.numerator)
            den = lcm(den, v.denominator)
    return Fraction(num, den) if num else Fraction(1)


def _short_vectors(images) -> list[list[Fraction]]:
    """The images and their sums and differences as primitive integer vectors, shortest first."""
    imgs = [primitive_integer(v) for v in images if any(v)]
    cands = list(imgs)
    for a in range(len(imgs)):
        for b in range(a + 1, len(imgs)):
            for sgn in (1, -1):
                v = [x + sgn * y for x, y in zip(imgs[a], imgs[b])]
                if any(v):
                    cands.append(primitive_integer(v))
    cands.sort(key=lambda v: (sum(abs(x) for x in v), max(abs(x) for x in v)))
    return cands


def _block_tensor(T, basis) -> np.ndarray | None:
    """Structure tensor of the subalgebra spanned by ``basis`` (None if it is not closed)."""
    m = len(basis)
    d = len(basis[0])
    # coordinates from m independent rows of the d x m basis matrix
    piv = _rref([list(b) for b in basis], d)[1]  # m coordinates where the basis is independent
    sub = _obj([[basis[c][i] for c in range(m)] for i in piv])
    try:
        subinv = inverse(sub)
    except ValueError:
        return None
    out = _zeros(m, m, m)
    for a in range(m):
        for b in range(m):
            v = mul(T, basis[a], basis[b])
            c = [sum((subinv[k, t] * v[i] for t, i in enumerate(piv)), Fraction(0)) for k in range(m)]
            if any(sum((c[k] * basis[k][i] for k in range(m)), Fraction(0)) != v[i] for i in range(d)):
                return None  # not closed
            out[a, b, :] = c
    return out


def _block_basis(T, e, d) -> list[list[Fraction]]:
    """A basis of the ideal A e giving a small block tensor (after content normalisation): the best
    of (a) the images b_j e in the given order, (b) the block unit then the shortest images, sums and
    differences, (c) the shortest vectors alone."""
    units = [[Fraction(int(i == j)) for j in range(d)] for i in range(d)]
    images = [mul(T, b, e) for b in units]
    first = _span_basis([primitive_integer(v) for v in images if any(v)], d)
    m = len(first)
    short = _short_vectors(list({tuple(primitive_integer(v)): v for v in images if any(v)}.values()))
    options = [first, _span_basis([primitive_integer(e)] + short, d, m), _span_basis(short, d, m)]
    best, best_key = options[0], None
    for basis in options:
        B = _block_tensor(T, basis)
        if B is None:
            continue
        B = B * (1 / _content(B))
        vals = [v for v in B.reshape(-1) if v]
        key = (max((max(abs(v.numerator), v.denominator) for v in vals), default=0), len(vals))
        if best_key is None or key < best_key:
            best, best_key = basis, key
    return best


def split_algebra(T, *, seed: int = 0, idempotents=None) -> Split | None:
    """Split a unital associative algebra into its primitive central ideals, exactly over Q.

    Returns None when there is nothing to split: no unit, not associative, or a single block (e.g. C, H,
    M2R, dual numbers).  Each block's basis is the one giving the smallest block tensor among: the
    images b_j e_i of the old basis vectors; the block unit followed by short vectors among the images
    and their sums and differences; those short vectors alone (primitive integer vectors).  It is then
    scaled so that the block tensor is a primitive integer tensor.
    The result is checked exactly: T' = transform_tensor(T, P) is block-diagonal with the given blocks.
    ``idempotents``: a precomputed result of :func:`central_idempotents` (to avoid recomputing it).
    """
    T = as_fraction_tensor(T)
    d = T.shape[0]
    res = central_idempotents(T, seed=seed) if idempotents is None else idempotents
    if res is None:
        return None
    idems, certified = res
    if len(idems) < 2:
        return None
    bases = [_block_basis(T, e, d) for e in idems]
    order = sorted(range(len(idems)), key=lambda t: (len(bases[t]), [-x for x in idems[t]]))
    idems = [idems[t] for t in order]
    bases = [bases[t] for t in order]
    dims = [len(b) for b in bases]
    if sum(dims) != d:
        return None
    P = _obj([[bases[t][c][i] for t in range(len(bases)) for c in range(dims[t])] for i in range(d)])
    try:
        Pinv = inverse(P)
    except ValueError:
        return None
    Tn = transform_tensor(T, P, Pinv)
    offsets = [sum(dims[:t]) for t in range(len(dims))]
    # rescale each block so that its tensor is a primitive integer tensor (basis b -> lam*b, T -> lam*T)
    scale = [Fraction(1)] * d
    for o, m in zip(offsets, dims):
        blk = Tn[o:o + m, o:o + m, o:o + m]
        lam = 1 / (blk[0, 0, 0] if m == 1 else _content(blk))  # 1-dim block: basis = idempotent
        for c in range(o, o + m):
            scale[c] = lam
    if any(s != 1 for s in scale):
        S = _obj([[scale[i] if i == j else Fraction(0) for j in range(d)] for i in range(d)])
        Sinv = _obj([[1 / scale[i] if i == j else Fraction(0) for j in range(d)] for i in range(d)])
        P, Pinv = P.dot(S), Sinv.dot(Pinv)
        Tn = transform_tensor(T, P, Pinv)
    mask = np.zeros((d, d, d), dtype=bool)
    blocks = []
    for o, m in zip(offsets, dims):
        mask[o:o + m, o:o + m, o:o + m] = True
        blocks.append(Tn[o:o + m, o:o + m, o:o + m].copy())
    if any(v != 0 for v in Tn[~mask]):
        return None  # not a direct product (cannot happen for associative unital A; kept as a guard)
    return Split(P=P, Pinv=Pinv, blocks=blocks, dims=dims, idempotents=idems, primitive=certified,
                 offsets=offsets)


# --------------------------------------------------------------------------------------------------
# matrix units for a block isomorphic to M_n(Q)
# --------------------------------------------------------------------------------------------------
def standard_matrix_tensor(n: int) -> np.ndarray:
    """M_n(Q) in the row-major matrix-unit basis: E_ab E_cd = delta_bc E_ad."""
    d = n * n
    T = _zeros(d, d, d)
    for a in range(n):
        for b in range(n):
            for c in range(n):
                T[n * a + b, n * b + c, n * a + c] = Fraction(1)
    return T


def _corner_candidates(T, e, rng: random.Random, max_random: int):
    """Elements of the corner e A e: projected basis vectors, sums/differences of pairs, then random."""
    d = T.shape[0]
    units = [[Fraction(int(i == j)) for j in range(d)] for i in range(d)]
    proj = [mul(T, mul(T, e, b), e) for b in units]
    basis = _span_basis(proj, d)
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
        v = _random_combo(rng, basis, 1 + t // 50)
        if fresh(v):
            yield v


def matrix_unit_basis(T, *, seed: int = 0, max_tries: int = 400):
    """If T is (exactly) isomorphic to M_n(Q), n >= 2, return (P, Pinv, n) with
    transform_tensor(T, P, Pinv) == standard_matrix_tensor(n); else None.

    Constructive: split the unit into orthogonal idempotents with the CRT on minimal polynomials of
    corner elements that factor over Q, until every corner e A e is one-dimensional (rank-1
    idempotents e_1..e_n); then E_1j spans e_1 A e_j, E_j1 in e_j A e_1 is scaled so that
    E_1j E_j1 = e_1, and E_ij = E_i1 E_1j.  A division algebra (e.g. H) is reported as None after
    ``max_tries`` candidates per corner.
    """
    T = as_fraction_tensor(T)
    d = T.shape[0]
    n = isqrt(d)
    if n < 2 or n * n != d:
        return None
    one = find_unit(T)
    if one is None or not is_associative(T) or len(centre(T)) != 1:
        return None
    if radical_dimension(T) != 0:
        return None
    rng = random.Random(seed)
    todo = [one]
    final: list[list[Fraction]] = []
    while todo:
        e = todo.pop(0)
        units = [[Fraction(int(i == j)) for j in range(d)] for i in range(d)]
        k2 = len(_span_basis([mul(T, mul(T, e, b), e) for b in units], d))
        if k2 == 1:
            final.append(e)
            continue
        if isqrt(k2) ** 2 != k2:
            return None
        split = False
        for x in _corner_candidates(T, e, rng, max_tries):
            mp = _minpoly_krylov(T, x, e)
            if len(mp) <= 2:
                continue  # x is a multiple of e
            pieces, _ = _crt_idempotents(T, x, e, mp)
            if len(pieces) > 1:
                todo = pieces + todo
                split = True
                break
        if not split:
            return None
    if len(final) != n:
        return None
    units = [[Fraction(int(i == j)) for j in range(d)] for i in range(d)]
    E = [[None] * n for _ in range(n)]
    E[0][0] = final[0]
    for j in range(1, n):
        ej = final[j]
        a = next((v for v in (mul(T, mul(T, final[0], b), ej) for b in units) if any(v)), None)
        f = next((v for v in (mul(T, mul(T, ej, b), final[0]) for b in units) if any(v)), None)
        if a is None or f is None:
            return None
        a = primitive_integer(a)
        af = mul(T, a, f)
        p = next(i for i, x in enumerate(final[0]) if x)
        mu = af[p] / final[0][p]
        if not mu:
            return None
        E[0][j] = a
        E[j][0] = [x / mu for x in f]
    for i in range(1, n):
        for j in range(n):
            E[i][j] = E[i][0] if j == 0 else mul(T, E[i][0], E[0][j])
    cols = [E[a][b] for a in range(n) for b in range(n)]
    P = _obj([[cols[c][i] for c in range(d)] for i in range(d)])
    try:
        Pinv = inverse(P)
    except ValueError:
        return None
    if not np.all(transform_tensor(T, P, Pinv) == standard_matrix_tensor(n)):
        return None
    return P, Pinv, n


# --------------------------------------------------------------------------------------------------
# lower bounds
# --------------------------------------------------------------------------------------------------
def lower_bound(T, *, simple: bool | None = None) -> int:
    """A proven lower bound on the rank of T over Q.

    * the ranks of the three flattenings (always valid);
    * Alder-Strassen, for associative algebras with a unit: R >= 2d - t, t = number of maximal two-sided
      ideals = number of simple components of A/rad A.  t <= dim(A/rad A) always; t = 1 when A is
      semisimple with no central idempotent split (``simple=True``, passed by the caller that has proven
      the centre's idempotent primitive), and t = 1 when A/rad A is one-dimensional.
    """
    T = as_fraction_tensor(T)
    d = T.shape[0]
    flat = [rank_of(np.moveaxis(T, ax, 0).reshape(d, d * d)) for ax in range(3)]
    lb = max(flat) if d else 0
    if d and find_unit(T) is not None and is_associative(T):
        rad = radical_dimension(T)
        q = d - rad
        if q <= 1 or (rad == 0 and simple):
            t = 1
        else:
            t = q
        lb = max(lb, 2 * d - t)
    return lb
