"""Choose the best verified scheme for each algebra.

Candidates, each verified exactly before it is considered:
  - the naive scheme (always valid, the reference);
  - a scheme given in the spec (`scheme=`); a wrong one fails the build;
  - a stored search result `<spec_dir>/schemes/<Name>.json`; a wrong one fails the build;
  - for builder-made algebras, the composition of the factors' best schemes (tensor products) or the
    transported scheme (basis changes);
  - the candidates of any other registered algebra with the identical structure tensor (so the M2R
    inside `matrix_algebra(4)` uses the spec's Winograd scheme).
The lowest rank wins; ties prefer given > stored > composed > naive.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..exact import InexactNumberError, fraction_str
from ..spec.algebra import Algebra
from ..spec.errors import SpecError
from . import scheme as sch

_PRIORITY = {"given": 0, "stored": 1, "composed": 2, "naive": 3}


def _tensor_key(A: Algebra) -> tuple:
    return (A.dim, tuple(fraction_str(v) for v in A.T.reshape(-1)))


class SchemeResolver:
    def __init__(self, algebras: dict[str, Algebra], spec_dir: Path):
        self.spec_dir = Path(spec_dir)
        self.by_tensor: dict[tuple, list[Algebra]] = {}
        for A in algebras.values():
            self.by_tensor.setdefault(_tensor_key(A), []).append(A)
        self._memo: dict[tuple, tuple[sch.Scheme, str]] = {}

    def stored_path(self, A: Algebra) -> Path:
        return self.spec_dir / "schemes" / f"{A.name}.json"

    def _local(self, A: Algebra) -> list[tuple[sch.Scheme, str]]:
        """Verified candidates from A itself, with their kind."""
        cands = [(sch.naive(A.T), "naive")]
        if A.given_scheme is not None:
            s = sch.Scheme(*A.given_scheme, provenance="given in spec")
            if not s.verify(A.T):
                raise SpecError(f"the scheme given in the spec is wrong: {s.mismatch(A.T, A.basis)}",
                                algebra=A.name, file=A.source)
            cands.append((s, "given"))
        path = self.stored_path(A)
        if path.is_file():
            try:
                s = sch.load_file(path, dim=A.dim)
            except (ValueError, KeyError, TypeError, ZeroDivisionError, InexactNumberError) as e:
                raise SpecError(f"cannot read stored scheme: {e}", algebra=A.name, file=str(path))
            if not s.verify(A.T):
                raise SpecError(f"stored scheme is wrong: {s.mismatch(A.T, A.basis)}", algebra=A.name,
                                file=str(path))
            cands.append((s, "stored"))
        if A.derivation is not None:
            kind, *args = A.derivation
            if kind == "tensor":
                a, b = (self.best(X) for X in args)
                s = sch.compose_tensor(a, b, f"composed: {args[0].name} ({a.rank}) x {args[1].name} ({b.rank})")
            else:
                base, P = args
                inner = self.best(base)
                s = sch.change_basis(inner, P, f"basis change of {base.name}: {inner.provenance}")
            if not s.verify(A.T):  # a bug in the builders, not in the user's spec
                raise AssertionError(f"composed scheme for {A.name} failed verification")
            cands.append((s, "composed"))
        return cands

    def best(self, A: Algebra) -> sch.Scheme:
        """The lowest-rank verified scheme for A (see module docstring)."""
        key = A.key
        if key not in self._memo:
            cands = self._local(A)
            for twin in self.by_tensor.get(_tensor_key(A), []):
                if twin is not A and twin.key != key:
                    for s, kind in self._local(twin):
                        cands.append((s.with_provenance(f"{s.provenance} (via {twin.name})"), kind))
            s, kind = min(cands, key=lambda c: (c[0].rank, _PRIORITY[c[1]]))
            self._memo[key] = (s, kind)
        return self._memo[key][0]
