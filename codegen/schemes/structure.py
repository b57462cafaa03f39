"""The structural route: find an algebra's structure in its bare table and express it as builder derivations.

`recognise(T)` returns an `AlgebraSpec` whose structure tensor is exactly T and whose `derivation` (the builders' own
mechanism, `codegen.spec.builders`) reduces it to pieces with known schemes, so the resolver composes a scheme
for any basis order, signs or rational basis change a user typed the table in:

1. radical: A = S + g S with J = g S, J^2 = 0 (Wedderburn-Malcev; G(3,0,1) = Cl(3,0) + e0 Cl(3,0)) -> 3 r(S);
2. centre: central idempotents split A into simple blocks (Wedderburn-Artin over Q) -> the blocks' ranks add;
3. a simple block: matrix units give A = M_n(Q) (x) D -> r(M_n) r(D); D a field (power basis: Toom-Cook,
   2k - 1; C: 3) or the quaternions (8);
4. octonion-like (alternative, not associative, dimension 8): the Cayley-Dickson double of a quaternion
   subalgebra -> 4 r(B); when the half is H in the basis (1, i, j, k) and l^2 = -1 (the octonions with a unit-norm
   basis), the double is exactly the built-in O's tensor and the scheme library's octonion scheme applies
   (`codegen.schemes.known`).
Each step is an exact basis change checked exactly; anything not recognised stays a plain block (naive scheme).
Deterministic (fixed seeds, no wall time).  Memoised per tensor.
"""
from __future__ import annotations

import numpy as np

from .. import exact
from ..exact.composition import cayley_dickson_split
from ..exact.radical import radical_split
from ..exact.simple import field_power_basis, quaternion_basis, simple_decomposition
from ..exact.wedderburn import radical_dimension, split_algebra
from ..spec.algebra import AlgebraSpec
from ..spec.builders import cayley_dickson, direct_sum, extension, leaf
from ..spec.constructors import basis_change, derived, matrix_algebra, tensor
from .known import irreducible, known_scheme, power_polynomial

__all__ = ["recognise", "is_leaf"]

_MEMO: dict[tuple, AlgebraSpec | None] = {}


def _names(prefix: str, d: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(d)]


def _plain(T: np.ndarray, name: str) -> AlgebraSpec:
    return derived(name, _names("b", T.shape[0]), T, derivation=None)


def _moved(X: AlgebraSpec, Pinv: np.ndarray, name: str) -> AlgebraSpec:
    """X in the basis whose vectors are the columns of Pinv (X given in the recognised basis)."""
    return basis_change(X, Pinv, _names("b", X.dim), name=name)


def is_leaf(T: np.ndarray) -> bool:
    """T has a known optimal scheme as it stands (a field Q[t]/(f): f irreducible), or is M_n(Q) in the
    matrix-unit basis."""
    d = T.shape[0]
    f = power_polynomial(T)
    if f is not None:
        return irreducible(f)
    if d <= 1 or known_scheme(T) is not None:
        return True
    n = int(round(d ** 0.5))
    return n * n == d and bool(np.all(T == exact.matrix_tensor(n)))


def recognise(T: np.ndarray) -> AlgebraSpec | None:
    """An algebra with structure tensor exactly T and a derivation through recognised pieces, or None when
    nothing is recognised (or T is already a leaf with a known scheme)."""
    key = exact.tensor_key(T)
    if key not in _MEMO:
        _MEMO[key] = _recognise(T)
    return _MEMO[key]


def _recognise(T) -> AlgebraSpec | None:
    d = T.shape[0]
    if is_leaf(T):
        n = int(round(d ** 0.5))
        if n >= 4 and n * n == d and any(n % f == 0 for f in range(2, n)):
            return matrix_algebra(n, name=f"M{n}R")         # composite n: composed from smaller matrix algebras
        return None
    if exact.unit(T) is None:
        return None
    X = _piece(T, "A")
    if X is None or X.derivation is None or not np.all(X.T == T):
        return None
    return X


def _piece(T, name: str) -> AlgebraSpec:
    """An algebra with tensor T: a leaf, a recognised structure, or a plain block."""
    if is_leaf(T):
        return recognise(T) or _plain(T, name)
    if not exact.is_associative(T):
        cd = cayley_dickson_split(T)
        if cd is None:
            return _plain(T, name)
        half = _piece(cd.B, f"{name}_half")
        doubled = cayley_dickson(half, cd.gamma, conjugation=cd.conj, name=f"{name}_cd", generator="l")
        return _moved(doubled, cd.Pinv, name)
    if radical_dimension(T):
        rs = radical_split(T)
        if rs is None:
            return _plain(T, name)
        S = _piece(rs.S, f"{name}_s")
        return _moved(extension(S, rs.theta, name=f"{name}_ext", generator="g"), rs.Pinv, name)
    sp = split_algebra(T)
    if sp is not None:
        blocks = [_simple(B, f"{name}{t}") for t, B in enumerate(sp.blocks)]
        return _moved(direct_sum(*blocks, name=f"{name}_sum"), sp.Pinv, name)
    return _simple(T, name)


def _simple(T, name: str) -> AlgebraSpec:
    """A simple block: M_n(Q) (x) D with D a field or the quaternions."""
    if is_leaf(T):
        return recognise(T) or _plain(T, name)
    dec = simple_decomposition(T)
    if dec is None:
        return _division(T, name)
    n = dec.n
    M = matrix_algebra(n, name=f"M{n}R") if n > 2 else leaf("M2R")
    inner = M if dec.D.shape[0] == 1 else tensor(M, _division(dec.D, f"{name}_D"), name=f"{name}_MxD")
    return _moved(inner, dec.Pinv, name)


def _division(T, name: str) -> AlgebraSpec:
    """A division algebra (or an unsplit block): field, quaternions, or plain."""
    d = T.shape[0]
    if is_leaf(T):
        return recognise(T) or _plain(T, name)
    if len(exact.centre(T)) == d:
        fp = field_power_basis(T)
        if fp is None:
            return _plain(T, name)
        P, f = fp
        F = derived(f"{name}_field", ["1"] + [f"t{i}" for i in range(1, d)], exact.power_tensor(f), derivation=None)
        return _moved(F, exact.inverse(P), name)
    if d == 4:
        P = quaternion_basis(T)
        if P is not None:
            return _moved(leaf("H"), exact.inverse(P), name)
    return _plain(T, name)
