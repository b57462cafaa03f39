"""Anti-involutions of an algebra: x -> x̄ with (xy)‾ = ȳ x̄ and x̄̄ = x, as a (d, d) real matrix J (x̄ = J x).

    J = involution_matrix("H")                     # quaternion conjugation diag(1, -1, -1, -1)
    J = involution_matrix(cl30)                    # Clifford reversion: blades of grade g times (-1)^(g(g-1)/2)
    J = involution_matrix("M2R", involution=P)     # any (d,) sign vector or (d, d) matrix the user gives

Without `involution=` the algebra's basis names decide:

- Clifford algebras (basis "1", "e1", ..., "e12", ... as `codegen.spec.clifford` names them: every blade of n
  generators, d = 2^n): reversion, the sign (-1)^(g(g-1)/2) on each blade of grade g;
- matrix algebras (basis "E11", "E12", ..., row-major matrix units): transposition E_ab -> E_ba;
- otherwise the standard conjugation diag(1, -1, ..., -1) (C, H, dual numbers, octonions, ...), where it is an
  anti-involution.

Every J, given or derived, is checked against the structure tensor (J² = I and J(e_i e_j) = J(e_j) J(e_i) for
all basis pairs, to 1e-9); one that fails is refused with the first failing pair, never used.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from .registry import Algebra, load_algebra

__all__ = ["involution_matrix", "default_involution", "check_involution"]

_BLADE = re.compile(r"^e(\d+)$")
_UNIT = re.compile(r"^E(\d)(\d)$")


def _clifford_signs(basis: tuple[str, ...]) -> np.ndarray | None:
    if not basis or basis[0] != "1":
        return None
    blades = []
    for name in basis[1:]:
        m = _BLADE.match(name)
        if m is None:
            return None
        digits = m.group(1)
        if list(digits) != sorted(set(digits)):
            return None
        blades.append(frozenset(digits))
    gens = {b for b in blades if len(b) == 1}
    n = len(gens)
    every = frozenset().union(*gens) if gens else frozenset()
    if len(basis) != 2 ** n or len(set(blades)) != len(blades) or any(not b <= every for b in blades):
        return None
    grades = [0] + [len(b) for b in blades]
    return np.array([(-1.0) ** (g * (g - 1) // 2) for g in grades])


def _transpose(basis: tuple[str, ...]) -> np.ndarray | None:
    n = int(round(len(basis) ** 0.5))
    if n * n != len(basis) or n > 9:
        return None
    if list(basis) != [f"E{r}{c}" for r in range(1, n + 1) for c in range(1, n + 1)]:
        return None
    P = np.zeros((n * n, n * n))
    for r in range(n):
        for c in range(n):
            P[c * n + r, r * n + c] = 1.0
    return P


def check_involution(algebra: Algebra, J: np.ndarray, tol: float = 1e-9) -> str | None:
    """None if J (d, d) is an anti-involution of the algebra, else a one-line reason naming a failing pair."""
    d = algebra.dim
    T = algebra.structure
    if not np.allclose(J @ J, np.eye(d), atol=tol):
        return "J @ J is not the identity (an involution applied twice gives x back)"
    lhs = np.einsum("ijk,mk->ijm", T, J)                      # J(e_i e_j)
    rhs = np.einsum("aj,bi,abm->ijm", J, J, T)                # J(e_j) J(e_i)
    bad = np.argwhere(np.abs(lhs - rhs) > tol)
    if len(bad):
        i, j = bad[0][:2]
        return (f"J(e_i e_j) != J(e_j) J(e_i) for e_i = {algebra.basis[i]}, e_j = {algebra.basis[j]} "
                f"(not an anti-automorphism)")
    return None


def default_involution(algebra: Algebra) -> tuple[np.ndarray, str] | None:
    """(J, what) from the basis names (see the module docstring), or None where no candidate checks out."""
    signs = _clifford_signs(algebra.basis)
    if signs is not None and check_involution(algebra, np.diag(signs)) is None:
        return np.diag(signs), "reversion"
    P = _transpose(algebra.basis)
    if P is not None and check_involution(algebra, P) is None:
        return P, "transposition"
    conj = np.diag([1.0] + [-1.0] * (algebra.dim - 1))
    if check_involution(algebra, conj) is None:
        return conj, "conjugation"
    return None


def involution_matrix(algebra, involution=None, who: str = "involution_matrix") -> np.ndarray:
    """The (d, d) float64 matrix J of the anti-involution (x̄ = J x): `involution` (a (d,) sign vector or a
    (d, d) matrix, as numbers, numpy or torch) or the algebra's default; refused unless it checks out."""
    A = algebra if isinstance(algebra, Algebra) else load_algebra(algebra)
    d = A.dim
    if involution is None:
        found = default_involution(A)
        if found is None:
            raise ValueError(f"{who}: algebra {A.name} has no default anti-involution (neither Clifford reversion, "
                             f"matrix transposition nor diag(1, -1, ..., -1) is one); pass involution= as a ({d},) "
                             f"sign vector or a ({d}, {d}) matrix")
        return found[0]
    J = np.asarray(involution.detach().cpu() if isinstance(involution, torch.Tensor) else involution,
                   dtype=np.float64)
    if J.shape == (d,):
        J = np.diag(J)
    if J.shape != (d, d):
        raise ValueError(f"{who}: involution must be a ({d},) sign vector or a ({d}, {d}) matrix for algebra "
                         f"{A.name}, got shape {J.shape}")
    reason = check_involution(A, J)
    if reason is not None:
        raise ValueError(f"{who}: the given involution is not an anti-involution of {A.name}: {reason}")
    return J
