"""Wedderburn structure of an associative algebra over Q, exactly: the radical, central idempotents and the split
into simple blocks (the simple blocks themselves: `codegen.exact.simple`).

Conventions: a structure tensor T is an object array of Fraction (d, d, d) with (x*y)_k = sum_ij T[i,j,k] x_i y_j;
a basis change x = P x' gives `codegen.exact.change_basis(T, P)`, and a scheme of the new tensor maps back with
`codegen.schemes.change_basis(s, Pinv)`.

* `split_algebra` -- primitive central idempotents e_1..e_t of a unital associative algebra (factoring minimal
  polynomials of central elements over Q, then the polynomial CRT), the basis change P whose columns are bases of
  the ideals A e_i, and the block tensors.  None when there is nothing to split.
* `radical_dimension`, `radical_basis` -- the radical of the trace form (the Jacobson radical).
* helpers shared with `codegen.exact.simple`: minimal polynomials (Krylov), CRT idempotents, subalgebra tensors.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import numpy as np

from .linalg import Echelon, inverse, nullspace, rref, span_basis
from .numbers import content, fraction_array, primitive_integer, zeros
from .tensors import basis_vector, centre, change_basis, is_associative, product, unit

__all__ = ["radical_dimension", "radical_basis", "central_idempotents", "Split", "split_algebra", "trace_vector",
           "minimal_polynomial", "crt_idempotents", "random_combination", "subalgebra_tensor"]


def trace_vector(T: np.ndarray) -> list[Fraction]:
    """tau with trace(L(y)) = tau . y."""
    d = T.shape[0]
    return [sum((T[i, j, j] for j in range(d)), Fraction(0)) for i in range(d)]


def radical_dimension(T: np.ndarray, basis: Sequence[Sequence[Fraction]] | None = None) -> int:
    """Dimension of the radical of the trace form (x, y) -> tr L(xy) on span(basis) (default: all of A).

    For an associative algebra over Q this is the Jacobson radical of A (Dickson); for a commutative
    subalgebra C of a unital associative A it is the nilradical of C.
    """
    d = T.shape[0]
    if basis is None:
        basis = [basis_vector(d, i) for i in range(d)]
    return len(basis) - len(rref(_trace_form(T, basis), len(basis))[1])


def _trace_form(T: np.ndarray, basis) -> list[list[Fraction]]:
    tau = trace_vector(T)
    return [[sum((t * p for t, p in zip(tau, product(T, a, b))), Fraction(0)) for b in basis] for a in basis]


def radical_basis(T: np.ndarray) -> list[list[Fraction]]:
    """A basis of the Jacobson radical of an associative algebra over Q (the radical of the trace form)."""
    d = T.shape[0]
    return nullspace(_trace_form(T, [basis_vector(d, i) for i in range(d)]), d)


# --------------------------------------------------------------------------------------------------
# polynomials (sympy over QQ)
# --------------------------------------------------------------------------------------------------
def minimal_polynomial(T: np.ndarray, x: list[Fraction], e: list[Fraction]) -> list[Fraction]:
    """Minimal polynomial of x in the corner with unit e (x*e = e*x = x): the monic p of least degree
    with p(L(x)) e = 0.  Coefficients low -> high degree."""
    ech = Echelon(len(e), track=True)
    v = list(e)
    while True:
        dep = ech.add(v)
        if dep is not None:
            return dep  # sum_t dep_t x^t = 0 with dep[-1] = 1
        v = product(T, x, v)


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
        acc = product(T, x, acc)
        if c:
            acc = [a + c * b for a, b in zip(acc, e)]
    return acc


def crt_idempotents(T, x, e, mp):
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
def random_combination(rng: random.Random, basis, bound: int):
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
    d = T.shape[0]
    one = unit(T)
    if one is None or not is_associative(T):
        return None
    Zb = centre(T)
    rng = random.Random(seed)
    todo = [one]
    done: list[tuple[list[Fraction], bool]] = []
    while todo:
        e = todo.pop(0)
        Ze = span_basis([product(T, z, e) for z in Zb], d)
        m = len(Ze)
        n = m - (radical_dimension(T, Ze) if m > 1 else 0)
        if n <= 1:
            done.append((e, True))
            continue
        split, cert = False, False
        for attempt in range(max_tries):
            z = random_combination(rng, Ze, 1 + attempt // 4)
            mp = minimal_polynomial(T, z, e)
            pieces, facs = crt_idempotents(T, z, e, mp)
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


def subalgebra_tensor(T, basis) -> np.ndarray | None:
    """Structure tensor of the subalgebra spanned by ``basis`` (None if it is not closed)."""
    m = len(basis)
    d = len(basis[0])
    # coordinates from m independent rows of the d x m basis matrix
    piv = rref([list(b) for b in basis], d)[1]  # m coordinates where the basis is independent
    sub = fraction_array([[basis[c][i] for c in range(m)] for i in piv])
    try:
        subinv = inverse(sub)
    except ValueError:
        return None
    out = zeros(m, m, m)
    for a in range(m):
        for b in range(m):
            v = product(T, basis[a], basis[b])
            c = [sum((subinv[k, t] * v[i] for t, i in enumerate(piv)), Fraction(0)) for k in range(m)]
            if any(sum((c[k] * basis[k][i] for k in range(m)), Fraction(0)) != v[i] for i in range(d)):
                return None  # not closed
            out[a, b, :] = c
    return out


def _block_basis(T, e, d) -> list[list[Fraction]]:
    """A basis of the ideal A e giving a small block tensor (after content normalisation): the best
    of (a) the images b_j e in the given order, (b) the block unit then the shortest images, sums and
    differences, (c) the shortest vectors alone."""
    units = [basis_vector(d, i) for i in range(d)]
    images = [product(T, b, e) for b in units]
    first = span_basis([primitive_integer(v) for v in images if any(v)], d)
    m = len(first)
    short = _short_vectors(list({tuple(primitive_integer(v)): v for v in images if any(v)}.values()))
    options = [first, span_basis([primitive_integer(e)] + short, d, m), span_basis(short, d, m)]
    best, best_key = options[0], None
    for basis in options:
        B = subalgebra_tensor(T, basis)
        if B is None:
            continue
        B = B * (1 / content(B.reshape(-1)))
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
    The result is checked exactly: T' = change_basis(T, P) is block-diagonal with the given blocks.
    ``idempotents``: a precomputed result of :func:`central_idempotents` (to avoid recomputing it).
    """
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
    P = fraction_array([[bases[t][c][i] for t in range(len(bases)) for c in range(dims[t])] for i in range(d)])
    try:
        Pinv = inverse(P)
    except ValueError:
        return None
    Tn = change_basis(T, P, Pinv)
    offsets = [sum(dims[:t]) for t in range(len(dims))]
    # rescale each block so that its tensor is a primitive integer tensor (basis b -> lam*b, T -> lam*T)
    scale = [Fraction(1)] * d
    for o, m in zip(offsets, dims):
        blk = Tn[o:o + m, o:o + m, o:o + m]
        lam = 1 / (blk[0, 0, 0] if m == 1 else content(blk.reshape(-1)))  # 1-dim block: basis = idempotent
        for c in range(o, o + m):
            scale[c] = lam
    if any(s != 1 for s in scale):
        S = fraction_array([[scale[i] if i == j else Fraction(0) for j in range(d)] for i in range(d)])
        Sinv = fraction_array([[1 / scale[i] if i == j else Fraction(0) for j in range(d)] for i in range(d)])
        P, Pinv = P.dot(S), Sinv.dot(Pinv)
        Tn = change_basis(T, P, Pinv)
    mask = np.zeros((d, d, d), dtype=bool)
    blocks = []
    for o, m in zip(offsets, dims):
        mask[o:o + m, o:o + m, o:o + m] = True
        blocks.append(Tn[o:o + m, o:o + m, o:o + m].copy())
    if any(v != 0 for v in Tn[~mask]):
        return None  # not a direct product (cannot happen for associative unital A; kept as a guard)
    return Split(P=P, Pinv=Pinv, blocks=blocks, dims=dims, idempotents=idems, primitive=certified,
                 offsets=offsets)
