"""Builders: algebras made by a rule or from other algebras, each carrying how it was made.

    from codegen.spec import clifford, group_algebra, cayley_dickson, opposite, direct_sum, extension

Every builder records its construction in `AlgebraSpec.derivation`, and the build composes the scheme from it
(`codegen.schemes.resolve`): direct sums add ranks, the Cayley-Dickson double costs four products of the half,
a square-zero extension three, the opposite algebra swaps the two input maps, and a Clifford algebra is an
exact basis change of a tensor product of M2(R), H, C and R + R given by the isomorphisms
Cl(p+1, q+1) = M2(R) (x) Cl(p, q), Cl(p+2, q) = M2(R) (x) Cl(q, p), Cl(p, q+2) = H (x) Cl(q, p) (p counts the
generators that square to +1), and a degenerate generator g by Cl = S + gS.  Every composed scheme is verified
exactly against the algebra's own structure tensor before it is used.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np

from .. import exact
from .algebra import AlgebraSpec
from .constructors import derived, tensor
from .errors import SpecError

__all__ = ["clifford", "group_algebra", "cayley_dickson", "opposite", "direct_sum", "extension", "leaf"]

MAX_CLIFFORD_GENERATORS = 6
MAX_GROUP_ORDER = 64


# ------------------------------------------------------------------------------------------- leaves
def leaf(kind: str) -> AlgebraSpec:
    """The algebras everything else is reduced to, in the bases where their known schemes apply
    (`codegen.schemes.known`): "R", "C" (1, i), "H" (1, i, j, k), "M2R" (E11, E12, E21, E22), "R+R"."""
    return _leaf(kind)


@lru_cache(maxsize=None)
def _leaf(kind: str) -> AlgebraSpec:
    if kind == "R":
        return derived("R", ["1"], exact.fraction_array([[[1]]]), derivation=None, title="real numbers")
    if kind == "C":
        T = exact.zeros(2, 2, 2)
        T[0, 0, 0] = T[0, 1, 1] = T[1, 0, 1] = Fraction(1)
        T[1, 1, 0] = Fraction(-1)
        return derived("C", ["1", "i"], T, derivation=None, title="complex numbers")
    if kind == "H":
        return derived("H", ["1", "i", "j", "k"], exact.quaternion_tensor(), derivation=None, title="quaternions")
    if kind == "M2R":
        return derived("M2R", ["E11", "E12", "E21", "E22"], exact.matrix_tensor(2), derivation=None,
                       title="2x2 real matrices")
    if kind == "R+R":
        return direct_sum(leaf("R"), leaf("R"), name="R_plus_R", title="split-complex numbers")
    raise ValueError(f"unknown leaf {kind!r}")


# ----------------------------------------------------------------------------------------- checks
def _check_algebra(X: Any, who: str) -> AlgebraSpec:
    if not isinstance(X, AlgebraSpec):
        raise SpecError(f"{who}: expected an AlgebraSpec (from codegen.spec), got {type(X).__name__} {X!r}")
    return X


def _exact_matrix(M: Any, d: int, what: str, name: str) -> np.ndarray:
    try:
        M = exact.fraction_array(M)
    except exact.InexactNumberError as e:
        raise SpecError(f"{what}: {e}", algebra=name) from None
    if M.shape != (d, d):
        raise SpecError(f"{what} must be {d}x{d}, got shape {M.shape}", algebra=name)
    return M


def _exact_scalar(v: Any, what: str, name: str) -> Fraction:
    try:
        return exact.to_fraction(v)
    except exact.InexactNumberError as e:
        raise SpecError(f"{what}: {e}", algebra=name) from None


def _new_names(basis: Sequence[str], unit_name: str | None, gen: str) -> list[str]:
    """Names for the second half x*g: the unit gives g, every other b gives b + g."""
    return [gen if b == unit_name else f"{b}{gen}" for b in basis]


def _free_generator(basis: Sequence[str]) -> str:
    return next(g for g in "lmnopqrstuvw" if not any(g in b for b in basis))


# -------------------------------------------------------------------------------------- direct sum
def direct_sum(A: AlgebraSpec, B: AlgebraSpec, *more: AlgebraSpec, name: str | None = None,
               claims: Mapping[str, bool] | None = None, title: str = "") -> AlgebraSpec:
    """A x B (x ...): pairs multiplied componentwise, bases one after the other.  Basis names are kept when
    they are distinct, else prefixed with the part's name (`H_1`, `H_i`, ...; parts of one name get a number).
    Scheme: the parts' schemes side by side (ranks add)."""
    parts = [_check_algebra(X, "direct_sum") for X in (A, B, *more)]
    name = name or "_plus_".join(X.name for X in parts)
    flat = [b for X in parts for b in X.basis]
    if len(set(flat)) != len(flat):
        labels = [X.name for X in parts]
        if len(set(labels)) != len(labels):
            labels = [f"{X.name}{t + 1}" for t, X in enumerate(parts)]
        flat = [f"{lab}_{b}" for lab, X in zip(labels, parts) for b in X.basis]
    T = exact.direct_sum_tensor([X.T for X in parts])
    return derived(name, flat, T, derivation=("direct_sum", tuple(parts)), claims=claims,
                   title=title or " x ".join(X.name for X in parts))


# ---------------------------------------------------------------------------------------- opposite
def opposite(A: AlgebraSpec, *, name: str | None = None, claims: Mapping[str, bool] | None = None,
             title: str = "") -> AlgebraSpec:
    """The opposite algebra: x *op y = y * x, same basis.  Scheme: A's with the two input maps swapped."""
    A = _check_algebra(A, "opposite")
    return derived(name or f"{A.name}_op", A.basis, exact.opposite_tensor(A.T), derivation=("opposite", A),
                   claims=claims, title=title or f"opposite of {A.name}")


# ---------------------------------------------------------------------------------- Cayley-Dickson
def _default_conjugation(A: AlgebraSpec) -> np.ndarray:
    d = A.dim
    if d == 1:
        return exact.identity(1)
    if A.unit_name is None:
        raise SpecError("cayley_dickson: the algebra has no unit among its basis elements; pass conjugation= "
                        "(a d x d matrix)", algebra=A.name)
    C = exact.zeros(d, d)
    for i, b in enumerate(A.basis):
        C[i, i] = Fraction(1 if b == A.unit_name else -1)
    return C


def _check_involution(A: AlgebraSpec, C: np.ndarray, name: str) -> None:
    """conj must be an involution that reverses products: conj(e_i e_j) = conj(e_j) conj(e_i)."""
    d = A.dim
    if not np.all(C.dot(C) == exact.identity(d)):
        raise SpecError("cayley_dickson: the conjugation is not an involution (conj(conj(x)) != x)", algebra=name)
    cols = [list(C[:, i]) for i in range(d)]
    for i in range(d):
        for j in range(d):
            left = list(C.dot(exact.fraction_array(list(A.T[i, j, :]))))
            right = exact.product(A.T, cols[j], cols[i])
            if left != right:
                raise SpecError(f"cayley_dickson: the conjugation does not reverse products: conj({A.basis[i]}*"
                                f"{A.basis[j]}) != conj({A.basis[j]})*conj({A.basis[i]}); pass conjugation=",
                                algebra=name)


def cayley_dickson(A: AlgebraSpec, gamma: Any = -1, *, name: str | None = None, generator: str | None = None,
                   conjugation: Any = None, claims: Mapping[str, bool] | None = None, title: str = "") -> AlgebraSpec:
    """The Cayley-Dickson double A + A l with l^2 = gamma:

        (a + b l)(c + d l) = (ac + gamma conj(d) b) + (d a + b conj(c)) l

    Basis: A's, then each b l named b + generator (the unit's copy is the generator itself), e.g. R -> C ->
    H -> octonions with generators i, j, l.  `conjugation` (d x d, default: fix the unit, negate the other
    basis elements) must be an involution reversing products.  Scheme: four products of A (rank 4 r(A)).
    """
    A = _check_algebra(A, "cayley_dickson")
    name = name or f"CD_{A.name}"
    gamma = _exact_scalar(gamma, "cayley_dickson: gamma", name)
    if exact.unit(A.T) is None:
        raise SpecError(f"cayley_dickson: {A.name} has no unit", algebra=name)
    C = _default_conjugation(A) if conjugation is None else _exact_matrix(conjugation, A.dim,
                                                                         "cayley_dickson: conjugation", name)
    _check_involution(A, C, name)
    gen = generator or _free_generator(A.basis)
    unit_name = A.unit_name or (A.basis[0] if A.dim == 1 else None)
    basis = list(A.basis) + _new_names(A.basis, unit_name, gen)
    T = exact.cayley_dickson_tensor(A.T, gamma, C)
    return derived(name, basis, T, derivation=("cayley_dickson", A, gamma, C), claims=claims,
                   title=title or f"Cayley-Dickson double of {A.name}")


# -------------------------------------------------------------------------------------- extension
def extension(S: AlgebraSpec, theta: Any = None, *, name: str | None = None, generator: str | None = None,
              claims: Mapping[str, bool] | None = None, title: str = "") -> AlgebraSpec:
    """S + g S with g^2 = 0 and s g = g theta(s) (theta an automorphism of S, default the identity):

        (a + g b)(c + g d) = ac + g (theta(a) d + b c)

    e.g. the dual numbers over S (theta = 1), or a degenerate Clifford generator over the Clifford algebra of
    the others (theta = the grade involution).  Basis: S's, then g b named generator + b.  Scheme: three
    products of S (rank 3 r(S))."""
    S = _check_algebra(S, "extension")
    name = name or f"{S.name}_ext"
    Th = exact.identity(S.dim) if theta is None else _exact_matrix(theta, S.dim, "extension: theta", name)
    cols = [list(Th[:, i]) for i in range(S.dim)]
    for i in range(S.dim):
        for j in range(S.dim):
            if list(Th.dot(exact.fraction_array(list(S.T[i, j, :])))) != exact.product(S.T, cols[i], cols[j]):
                raise SpecError(f"extension: theta is not multiplicative: theta({S.basis[i]}*{S.basis[j]}) != "
                                f"theta({S.basis[i]})*theta({S.basis[j]})", algebra=name)
    gen = generator or _free_generator(S.basis)
    basis = list(S.basis) + [gen if b == S.unit_name else f"{gen}{b}" for b in S.basis]
    return derived(name, basis, exact.extension_tensor(S.T, Th), derivation=("extension", S, Th), claims=claims,
                   title=title or f"square-zero extension of {S.name}")


# ---------------------------------------------------------------------------------------- Clifford
def _blade_sign(a: int, b: int) -> int:
    """Sign of reordering the generators of blades a, b (bit masks) into increasing order."""
    swaps = 0
    a >>= 1
    while a:
        swaps += bin(a & b).count("1")
        a >>= 1
    return -1 if swaps & 1 else 1


def _blades(n: int) -> list[int]:
    """Bit masks of the blades by grade, then lexicographically by generator indices."""
    return [sum(1 << i for i in idx) for k in range(n + 1) for idx in combinations(range(n), k)]


def _clifford_tensor(sig: Sequence[int]) -> np.ndarray:
    blades = _blades(len(sig))
    index = {b: t for t, b in enumerate(blades)}
    d = len(blades)
    T = exact.zeros(d, d, d)
    for i, a in enumerate(blades):
        for j, b in enumerate(blades):
            coeff = _blade_sign(a, b)
            for g in range(len(sig)):
                if a & b & (1 << g):
                    coeff *= sig[g]
            if coeff:
                T[i, j, index[a ^ b]] = Fraction(coeff)
    return T


def _blade_names(n: int, start: int) -> list[str]:
    sep = "_" if n + start - 1 >= 10 else ""
    out = []
    for k in range(n + 1):
        for idx in combinations(range(n), k):
            out.append("1" if not idx else "e" + sep + sep.join(str(i + start) for i in idx))
    return out


@lru_cache(maxsize=None)
def _estimate(p: int, q: int) -> int:
    """The rank the isomorphisms give for Cl(p, q) (M2: 7, H: 8, C: 3, R + R: 2)."""
    base = {(0, 0): 1, (1, 0): 2, (0, 1): 3}
    if (p, q) in base:
        return base[(p, q)]
    options = []
    if p >= 1 and q >= 1:
        options.append(7 * _estimate(p - 1, q - 1))
    if p >= 2:
        options.append(7 * _estimate(q, p - 2))
    if q >= 2:
        options.append(8 * _estimate(q - 2, p))
    return min(options)


def _standard_clifford(p: int, q: int) -> AlgebraSpec:
    return clifford(p, q, name=f"Cl_{p}_{q}")


def _generator_vector(A: AlgebraSpec, g: int) -> list[Fraction]:
    """Generator g of a Clifford algebra in its blade basis (blade index 1 + g)."""
    return exact.basis_vector(A.dim, 1 + g)


def _model(sig: tuple[int, ...]) -> tuple[AlgebraSpec, list[list[Fraction]]]:
    """An algebra X with known scheme structure and the images in X of the generators, squaring as sig says
    and anticommuting (so that the blades' images form a basis of X isomorphic to Cl(sig))."""
    n = len(sig)
    if 0 in sig:
        z = n - 1 - sig[::-1].index(0)                       # the last degenerate generator
        rest = sig[:z] + sig[z + 1:]
        S = clifford(signature=list(rest), name="Cl_" + "".join({1: "p", -1: "m", 0: "z"}[s] for s in rest))
        grades = [bin(b).count("1") for b in _blades(len(rest))]
        theta = exact.zeros(S.dim, S.dim)
        for t, k in enumerate(grades):
            theta[t, t] = Fraction(-1 if k % 2 else 1)
        X = extension(S, theta, name=f"{S.name}_ext", generator="g")
        zero = [Fraction(0)] * S.dim
        images = []
        for g in range(n):
            if g == z:
                images.append(zero + exact.basis_vector(S.dim, 0))
            else:
                images.append(_generator_vector(S, g if g < z else g - 1) + zero)
        return X, images
    p, q = sig.count(1), sig.count(-1)
    if n == 0:
        return leaf("R"), []
    if n == 1:
        if sig[0] == 1:
            return leaf("R+R"), [[Fraction(1), Fraction(-1)]]
        return leaf("C"), [[Fraction(0), Fraction(1)]]
    # three isomorphisms; the one of least estimated rank wins (ties: the order below)
    M2 = {"Z": [1, 0, 0, -1], "X": [0, 1, 1, 0], "J": [0, -1, 1, 0], "1": [1, 0, 0, 1]}
    Hq = {"i": [0, 1, 0, 0], "j": [0, 0, 1, 0], "k": [0, 0, 0, 1], "1": [1, 0, 0, 0]}
    rules = []
    if p >= 1 and q >= 1:
        rules.append((7 * _estimate(p - 1, q - 1), "M2R", (p - 1, q - 1), {1: "X", -1: "J"}, "Z", 1))
    if p >= 2:
        rules.append((7 * _estimate(q, p - 2), "M2R", (q, p - 2), {1: "X", 2: "Z"}, "J", -1))
    if q >= 2:
        rules.append((8 * _estimate(q - 2, p), "H", (q - 2, p), {-1: "i", -2: "j"}, "k", -1))
    _, kind, (p2, q2), fresh, other, flip = min(rules, key=lambda r: r[0])
    outer = M2 if kind == "M2R" else Hq
    Y = _standard_clifford(p2, q2)
    # the fresh generators: the first of each needed square (two +1 for rule 2, two -1 for rule 3)
    taken: dict[int, str] = {}
    want = list(fresh.items())
    for g, s in enumerate(sig):
        for key, img in want:
            if (1 if key > 0 else -1) == s and img not in taken.values() and g not in taken:
                taken[g] = img
                want.remove((key, img))
                break
    next_sub = {1: 0, -1: p2}                                # Y's generators: p2 squaring to +1, then q2 to -1
    pairs = []
    for g, s in enumerate(sig):
        if g in taken:
            pairs.append((outer[taken[g]], exact.basis_vector(Y.dim, 0)))
        else:
            need = s * flip                                  # other^2 = flip, so the Y factor squares to s * flip
            pairs.append((outer[other], _generator_vector(Y, next_sub[need])))
            next_sub[need] += 1
    if Y.dim == 1:
        return leaf(kind), [[Fraction(v) for v in a] for a, _ in pairs]
    X = tensor(leaf(kind), Y, name=f"{kind}_x_{Y.name}")
    return X, [[Fraction(u) * w for u in a for w in b] for a, b in pairs]


def clifford(p: int = 0, q: int = 0, r: int = 0, *, signature: Sequence[int] | None = None, name: str | None = None,
             start_index: int = 1, claims: Mapping[str, bool] | None = None, title: str = "") -> AlgebraSpec:
    """The Clifford algebra Cl(p, q, r): generators e1..en (n = p + q + r), the first p squaring to +1, the next
    q to -1, the last r to 0, all anticommuting (or `signature=[+1, -1, 0, ...]` in any order).

    Basis: the blades by grade, then lexicographically by indices: "1", "e1", "e2", ..., "e12", "e13", ...,
    "e123", ..., with e_{i1...ik} = e_i1 e_i2 ... e_ik for i1 < ... < ik (the order of the `clifford` and
    `kingdon` packages; `start_index=0` numbers the generators from e0 as kingdon does when r > 0).
    Default name: Cl_p_q (Cl_p_q_r when r > 0).
    """
    if signature is None:
        for label, v in (("p", p), ("q", q), ("r", r)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SpecError(f"clifford: {label} must be a non-negative integer, got {v!r}")
        sig = (1,) * p + (-1,) * q + (0,) * r
        default = f"Cl_{p}_{q}" + (f"_{r}" if r else "")
    else:
        if isinstance(signature, str) or not isinstance(signature, Sequence) or \
                any(s not in (1, -1, 0) or isinstance(s, bool) for s in signature):
            raise SpecError(f"clifford: signature must be a list of +1, -1 and 0, got {signature!r}")
        if p or q or r:
            raise SpecError("clifford: give either p, q, r or signature=, not both")
        sig = tuple(int(s) for s in signature)
        default = "Cl_" + "".join({1: "p", -1: "m", 0: "z"}[s] for s in sig)
    if len(sig) > MAX_CLIFFORD_GENERATORS:
        raise SpecError(f"clifford: {len(sig)} generators give dimension {2 ** len(sig)}; at most "
                        f"{MAX_CLIFFORD_GENERATORS} generators are supported")
    if not isinstance(start_index, int) or isinstance(start_index, bool) or start_index < 0:
        raise SpecError(f"clifford: start_index must be a non-negative integer, got {start_index!r}")
    name = name or default
    T = _clifford_tensor(sig)
    derivation = None
    if sig:
        X, images = _model(sig)
        one = exact.unit(X.T)
        cols = []
        for b in _blades(len(sig)):
            v = list(one)
            for g in range(len(sig)):
                if b & (1 << g):
                    v = exact.product(X.T, v, images[g])
            cols.append(v)
        P = exact.fraction_array([[cols[c][i] for c in range(len(cols))] for i in range(X.dim)])
        if not np.all(exact.change_basis(X.T, P) == T):      # the isomorphisms above are theorems: a bug if not
            raise AssertionError(f"clifford{sig}: the model {X.name} is not isomorphic")
        derivation = ("basis_change", X, P)
    kinds = {1: "+1", -1: "-1", 0: "0"}
    return derived(name, _blade_names(len(sig), start_index), T, derivation=derivation, claims=claims,
                   title=title or f"Clifford algebra, generators squaring to {', '.join(kinds[s] for s in sig)}")


# ------------------------------------------------------------------------------------- group algebra
def _permutation(g: Any, k: int | None, idx: int) -> tuple[int, ...]:
    if isinstance(g, str) or not isinstance(g, Sequence) or not g:
        raise SpecError(f"group_algebra: generator {idx} must be a permutation given as a list of images, got {g!r}")
    if k is not None and len(g) != k:
        raise SpecError(f"group_algebra: generator {idx} acts on {len(g)} points, the first on {k}")
    if sorted(g) != list(range(len(g))) or any(isinstance(v, bool) for v in g):
        raise SpecError(f"group_algebra: generator {idx} = {list(g)} is not a permutation of 0..{len(g) - 1}")
    return tuple(int(v) for v in g)


def _table_from_generators(generators: Any) -> list[list[int]]:
    if isinstance(generators, str) or not isinstance(generators, Sequence) or not generators:
        raise SpecError("group_algebra: generators must be a non-empty list of permutations")
    gens = []
    for t, g in enumerate(generators):
        gens.append(_permutation(g, len(gens[0]) if gens else None, t))
    k = len(gens[0])
    ident = tuple(range(k))
    elements, index = [ident], {ident: 0}
    t = 0
    while t < len(elements):                     # breadth-first closure; (s g)(x) = s(g(x))
        for g in gens:
            h = tuple(g[elements[t][x]] for x in range(k))
            if h not in index:
                if len(elements) >= MAX_GROUP_ORDER:
                    raise SpecError(f"group_algebra: the group has more than {MAX_GROUP_ORDER} elements")
                index[h] = len(elements)
                elements.append(h)
        t += 1
    return [[index[tuple(a[b[x]] for x in range(k))] for b in elements] for a in elements]


def _check_table(table: Any) -> list[list[int]]:
    if isinstance(table, str) or not isinstance(table, Sequence) or not table:
        raise SpecError("group_algebra: table must be a non-empty square list of lists of element indices")
    n = len(table)
    if n > MAX_GROUP_ORDER:
        raise SpecError(f"group_algebra: {n} elements; at most {MAX_GROUP_ORDER} are supported")
    rows = []
    for i, row in enumerate(table):
        if isinstance(row, str) or not isinstance(row, Sequence) or len(row) != n:
            raise SpecError(f"group_algebra: table row {i} must list {n} element indices")
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n:
                raise SpecError(f"group_algebra: table[{i}][{j}] = {v!r} is not an element index 0..{n - 1}")
        rows.append([int(v) for v in row])
    for i in range(n):
        if rows[0][i] != i or rows[i][0] != i:
            raise SpecError(f"group_algebra: element 0 must be the identity, but g0*g{i} or g{i}*g0 is not g{i}")
        if sorted(rows[i]) != list(range(n)):
            raise SpecError(f"group_algebra: row {i} repeats an element (no inverses: not a group)")
    for a in range(n):
        for b in range(n):
            for c in range(n):
                if rows[rows[a][b]][c] != rows[a][rows[b][c]]:
                    raise SpecError(f"group_algebra: not associative: (g{a}*g{b})*g{c} != g{a}*(g{b}*g{c})")
    return rows


def group_algebra(name: str, table: Any = None, *, generators: Any = None, names: Sequence[str] | None = None,
                  claims: Mapping[str, bool] | None = None, title: str = "") -> AlgebraSpec:
    """The group algebra R[G]: basis the group elements, g * h their product.

    table: the Cayley table, table[i][j] = index of g_i g_j, identity at index 0.  Or generators: permutations
    as lists of images of 0..k-1, the group being their closure (identity first, then in order of discovery;
    the product s g applies g first).  names: one per element (default "1", "g1", "g2", ...).
    """
    if (table is None) == (generators is None):
        raise SpecError("group_algebra: give exactly one of table= or generators=", algebra=name)
    rows = _check_table(table) if table is not None else _table_from_generators(generators)
    n = len(rows)
    basis = ["1"] + [f"g{i}" for i in range(1, n)] if names is None else list(names)
    if len(basis) != n:
        raise SpecError(f"group_algebra: {n} elements but {len(basis)} names", algebra=name)
    T = exact.zeros(n, n, n)
    for i in range(n):
        for j in range(n):
            T[i, j, rows[i][j]] = Fraction(1)
    return derived(name, basis, T, derivation=None, claims=claims, title=title or f"group algebra of order {n}")
