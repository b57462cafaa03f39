"""Choose the best verified scheme for each algebra.

Candidates, each verified exactly before it is considered:
  - the naive scheme (always valid, the reference);
  - a scheme given in the spec (`scheme=`); a wrong one fails the build;
  - a stored search result `<spec_dir>/schemes/<Name>.json`; a wrong one fails the build;
  - for builder-made algebras, the scheme composed from the derivation (`Algebra.derivation`): tensor products
    (Kronecker products of the factors' schemes), direct sums (side by side), basis changes (transported),
    opposite algebras (input maps swapped), Cayley-Dickson doubles (four products of the half) and square-zero
    extensions (three products of the base);
  - a known optimal scheme when the tensor is exactly M2 (Winograd), H (Howell-Lafon) or Q[t]/(f) in the power
    basis (Toom-Cook) (`codegen.schemes.known`);
  - for algebras without a derivation, the structural route (`codegen.schemes.structure`): the structure found
    in the table (radical, centre, matrix units, division part), expressed as derivations and composed the same way;
  - the candidates of any other registered algebra with the identical structure tensor (so the M2R inside
    `matrix_algebra(4)` uses the spec's Winograd scheme).
The lowest rank wins; ties prefer given > stored > naive (the cheapest to run at equal rank) > composed > known >
structural.  A candidate whose rounding error can exceed the naive product's by more than GROWTH_LIMIT
(`Scheme.error_growth`: cancellation between large coefficients, e.g. a basis change by 10^10) is dropped; a given
scheme that unstable is refused.
"""
from __future__ import annotations

from pathlib import Path

from ..exact import InexactNumberError, tensor_key
from ..spec.algebra import Algebra
from ..spec.errors import SpecError
from . import scheme as sch
from .known import known_scheme

_PRIORITY = {"given": 0, "stored": 1, "naive": 2, "composed": 3, "known": 4, "structural": 5}
#: the largest error growth (`Scheme.error_growth`) a scheme may have: beyond it the scheme's cancellation costs
#: more than 10 bits of accuracy, and the naive product (growth 1) is used instead
GROWTH_LIMIT = 2.0 ** 10


def _tensor_key(A: Algebra) -> tuple:
    return tensor_key(A.T)


class SchemeResolver:
    def __init__(self, algebras: dict[str, Algebra], spec_dir: Path | None):
        self.spec_dir = None if spec_dir is None else Path(spec_dir)
        self.by_tensor: dict[tuple, list[Algebra]] = {}
        for A in algebras.values():
            self.by_tensor.setdefault(_tensor_key(A), []).append(A)
        self._memo: dict[tuple, tuple[sch.Scheme, str]] = {}
        self._active: set[tuple] = set()

    def stored_path(self, A: Algebra) -> Path:
        if self.spec_dir is None:
            raise ValueError("this resolver has no spec folder")
        return self.spec_dir / "schemes" / f"{A.name}.json"

    def composed(self, A: Algebra) -> sch.Scheme:
        """The scheme composed from A's derivation (verified exactly)."""
        kind, *args = A.derivation
        if kind == "tensor":
            a, b = (self.best(X) for X in args)
            s = sch.compose_tensor(a, b, f"composed: {args[0].name} ({a.rank}) x {args[1].name} ({b.rank})")
        elif kind == "basis_change":
            base, P = args
            inner = self.best(base)
            s = sch.change_basis(inner, P, f"basis change of {base.name}: {inner.provenance}")
        elif kind == "direct_sum":
            parts = [(X, self.best(X)) for X in args[0]]
            s = sch.direct_sum([p for _, p in parts],
                               "composed: " + " + ".join(f"{X.name} ({p.rank})" for X, p in parts))
        elif kind == "opposite":
            inner = self.best(args[0])
            s = sch.opposite(inner, f"opposite of {args[0].name}: {inner.provenance}")
        elif kind == "cayley_dickson":
            base, gamma, conj = args
            inner = self.best(base)
            s = sch.cayley_dickson(inner, gamma, conj, f"Cayley-Dickson double of {base.name}: 4 x {inner.rank} "
                                                       f"({inner.provenance})")
        elif kind == "extension":
            base, theta = args
            inner = self.best(base)
            s = sch.extension(inner, theta, f"square-zero extension of {base.name}: 3 x {inner.rank} "
                                            f"({inner.provenance})")
        else:
            raise AssertionError(f"unknown derivation {kind!r} of {A.name}")
        if not s.verify(A.T):  # a bug in the builders, not in the user's spec
            raise AssertionError(f"composed scheme for {A.name} failed verification")
        return s

    def _local(self, A: Algebra) -> list[tuple[sch.Scheme, str]]:
        """Verified candidates from A itself, with their kind."""
        cands = [(sch.naive(A.T), "naive")]
        if A.given_scheme is not None:
            s = sch.Scheme(*A.given_scheme, provenance="given in spec")
            if not s.verify(A.T):
                raise SpecError(f"the scheme given in the spec is wrong: {s.mismatch(A.T, A.basis)}",
                                algebra=A.name, file=A.source)
            growth = s.error_growth(A.T)
            if growth > GROWTH_LIMIT:
                raise SpecError(f"the scheme given in the spec is exact but numerically unstable: its rounding error "
                                f"can be {growth:.3g} times the naive product's (cancellation between large "
                                f"coefficients; the limit is {GROWTH_LIMIT:g}); give a better scaled scheme or none",
                                algebra=A.name, file=A.source)
            cands.append((s, "given"))
        path = None if self.spec_dir is None else self.stored_path(A)
        if path is not None and path.is_file():
            try:
                s = sch.load_file(path, dim=A.dim)
            except (ValueError, KeyError, TypeError, ZeroDivisionError, InexactNumberError) as e:
                raise SpecError(f"cannot read stored scheme: {e}", algebra=A.name, file=str(path))
            if not s.verify(A.T):
                raise SpecError(f"stored scheme is wrong: {s.mismatch(A.T, A.basis)}", algebra=A.name,
                                file=str(path))
            cands.append((s, "stored"))
        known = known_scheme(A.T)
        if known is not None and known.verify(A.T):
            cands.append((known, "known"))
        if A.derivation is not None:
            cands.append((self.composed(A), "composed"))
        else:
            from .structure import recognise       # imports the builders, which import this package's parent
            X = recognise(A.T)
            if X is not None:
                s = self.best(X)
                if s.verify(A.T):
                    cands.append((s.with_provenance(f"structure: {s.provenance}"), "structural"))
        return cands

    def best(self, A: Algebra) -> sch.Scheme:
        """The lowest-rank verified scheme for A (see module docstring)."""
        key = A.key
        if key in self._active:                     # a twin or structure leading back here: no cycle
            return sch.naive(A.T)
        if key not in self._memo:
            self._active.add(key)
            try:
                cands = self._local(A)
                for twin in self.by_tensor.get(_tensor_key(A), []):
                    if twin is not A and twin.key != key:
                        for s, kind in self._local(twin):
                            cands.append((s.with_provenance(f"{s.provenance} (via {twin.name})"), kind))
            finally:
                self._active.discard(key)
            cands = [c for c in cands if c[1] in ("naive", "given") or c[0].error_growth(A.T) <= GROWTH_LIMIT]
            s, kind = min(cands, key=lambda c: (c[0].rank, _PRIORITY[c[1]]))
            self._memo[key] = (s, kind)
        return self._memo[key][0]


def structural_scheme(T) -> sch.Scheme | None:
    """The scheme the structural route composes for a bare tensor (None when nothing is recognised)."""
    from .structure import recognise

    X = recognise(T)
    if X is None:
        known = known_scheme(T)
        return known
    return SchemeResolver({}, None).best(X)
