"""`AlgebraSpec`: the immutable result of every spec constructor (exact structure tensor in a named basis)."""
from __future__ import annotations

from functools import cached_property
from typing import Mapping, Sequence

import numpy as np

from ..exact import fraction_str

CLAIM_NAMES = ("associative", "commutative", "anticommutative", "unital", "alternative", "flexible", "jacobi")


class AlgebraSpec:
    """An algebra over R given by exact structure constants in a named basis.

    Attributes: name, basis (tuple of names), T (object array (d,d,d)), claims (dict), title,
    unit_name (a basis element declared as unit, or None), given_scheme ((U,V,W) exact arrays or None),
    derivation (how a builder made it: ("tensor", A, B) or ("basis_change", A, P) or None), source (file).
    """

    def __init__(self, name: str, basis: Sequence[str], T: np.ndarray, *, claims: Mapping[str, bool],
                 title: str, unit_name: str | None, given_scheme: tuple | None = None,
                 derivation: tuple | None = None, source: str | None = None):
        self.name = name
        self.basis = tuple(basis)
        self.T = T
        self.claims = dict(claims)
        self.title = title
        self.unit_name = unit_name
        self.given_scheme = given_scheme
        self.derivation = derivation
        self.source = source

    @property
    def dim(self) -> int:
        return len(self.basis)

    @cached_property
    def key(self) -> tuple:
        """Canonical content: equal keys mean the same algebra (used to de-duplicate re-imports)."""
        scheme = None
        if self.given_scheme is not None:
            scheme = tuple(tuple(fraction_str(v) for v in M.reshape(-1)) for M in self.given_scheme)
        return (self.name, self.basis, tuple(fraction_str(v) for v in self.T.reshape(-1)),
                tuple(sorted(self.claims.items())), self.title, self.unit_name, scheme)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AlgebraSpec) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"AlgebraSpec({self.name!r}, dim={self.dim})"
