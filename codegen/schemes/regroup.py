"""Regrouping tensor factors, so that two M2 factors become one M4 and its library scheme applies.

A builder can make an algebra as a nested tensor product whose factors come in an order that hides a larger
matrix algebra: `clifford(6, 0)` is M2 (x) (H (x) M2) after exact basis changes, composed as 7 x 8 x 7 = 392,
while M2 (x) M2 = M4 has the library's rank-48 scheme, giving 48 x 8 = 384.  The structural route would find
this too, but its analysis of a 64-dimensional algebra costs many seconds; regrouping costs a permutation.

`tensor_factors(A)` flattens nested `tensor` and `basis_change` derivations: A.T == change_basis(F_1 (x) ... (x)
F_k, Q) with the factors in Kronecker order.  `regrouped(A, best)` moves the first two factors that are exactly
M2 (row-major matrix units) to the front, composes their product (through `best` with the structural route,
which reaches the M4 library scheme) with the other factors' schemes, and maps the result back exactly; None when
there is nothing to regroup (fewer than three factors or fewer than two M2 factors).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..exact import exact_dot, identity, matrix_tensor, zeros
from ..spec.algebra import AlgebraSpec
from .scheme import Scheme, change_basis, compose_tensor

__all__ = ["tensor_factors", "regrouped"]


def _kron(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    return np.einsum("ab,cd->acbd", P, Q).reshape(P.shape[0] * Q.shape[0], P.shape[1] * Q.shape[1])


def tensor_factors(A: AlgebraSpec) -> tuple[list[AlgebraSpec], np.ndarray]:
    """(factors, Q) with A.T == change_basis(kron of the factors' tensors, Q) (see the module docstring)."""
    kind = A.derivation[0] if A.derivation is not None else None
    if kind == "tensor":
        fa, qa = tensor_factors(A.derivation[1])
        fb, qb = tensor_factors(A.derivation[2])
        return fa + fb, _kron(qa, qb)
    if kind == "basis_change":
        factors, q = tensor_factors(A.derivation[1])
        return factors, exact_dot(q, A.derivation[2])
    return [A], identity(A.dim)


def _permutation(dims: list[int], order: list[int]) -> np.ndarray:
    """P with P[I, I'] = 1 where I indexes the Kronecker product in the factor order 0..k-1 and I' the same
    element in `order` (so change_basis(T_original, P) == T_regrouped)."""
    d = int(np.prod(dims))
    P = zeros(d, d)
    new_dims = [dims[t] for t in order]
    for idx in np.ndindex(*dims):
        old = int(np.ravel_multi_index(idx, dims))
        new = int(np.ravel_multi_index(tuple(idx[t] for t in order), new_dims))
        P[old, new] = 1
    return P


def regrouped(A: AlgebraSpec, best: Callable[[AlgebraSpec, bool], Scheme]) -> Scheme | None:
    """A's scheme with its first two M2 factors composed as M4 (see the module docstring); `best(X, structural)`
    gives a piece's best scheme.  The result is verified exactly; None when it does not apply or does not verify."""
    from ..spec.builders import leaf                   # the builders import this package's parent
    from ..spec.constructors import tensor

    factors, Q = tensor_factors(A)
    m2 = [t for t, F in enumerate(factors) if F.dim == 4 and np.all(F.T == matrix_tensor(2))]
    if len(factors) < 3 or len(m2) < 2:
        return None
    order = m2[:2] + [t for t in range(len(factors)) if t not in m2[:2]]
    pair = tensor(leaf("M2R"), leaf("M2R"), name="M2R_x_M2R")
    s = best(pair, True)
    names = [f"M4 ({s.rank})"]
    for t in order[2:]:
        part = best(factors[t], False)
        s = compose_tensor(s, part, "")
        names.append(f"{factors[t].name} ({part.rank})")
    P = _permutation([F.dim for F in factors], order)
    out = change_basis(s, exact_dot(P.T, Q), f"regrouped tensor factors: {' x '.join(names)} "
                                            f"(two M2 factors as M4: {s.provenance or pair.name})")
    return out if out.verify(A.T) else None
