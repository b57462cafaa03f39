"""Choose the best verified scheme for each algebra: every applicable route is tried and the cheapest wins.

Candidates, each verified exactly before it is considered:
  - the naive scheme (always valid, the reference);
  - a scheme given in the spec (`scheme=`); a wrong one fails the build;
  - a stored search result `<spec_dir>/schemes/<Name>.json`; a wrong one fails the build;
  - for builder-made algebras, the scheme composed from the derivation (`AlgebraSpec.derivation`): tensor products
    (Kronecker products of the factors' schemes; nested tensor products are also regrouped so that two M2 factors
    make one M4 with the library's 48, `codegen.schemes.regroup`), direct sums (side by side), basis changes (transported),
    opposite algebras (input maps swapped), Cayley-Dickson doubles (four products of the half) and square-zero
    extensions (three products of the base);
  - a known scheme when the tensor is exactly M2 (Winograd), H (Howell-Lafon), Q[t]/(f) in the power basis
    (Toom-Cook) or a tensor of the scheme library (M3, M4, the octonions: `codegen.schemes.known`);
  - the structural route (`codegen.schemes.structure`), for every algebra, builder-made or not (builder-made
    ones up to dimension `STRUCTURAL_MAX_DIM_DERIVED`, a bound on build time): the structure
    found in the table (radical, centre, matrix units, division part, Cayley-Dickson halves), expressed as
    derivations down to known and library schemes and composed the same way (so `tensor(C, C)` = C x C gets
    3 + 3 rather than 3 x 3, and an algebra isomorphic to M4(R) or the octonions gets the library's scheme);
  - the candidates of any other registered algebra with the identical structure tensor (so the M2R inside
    `matrix_algebra(4)` uses the spec's Winograd scheme).
The lowest rank wins; ties go to fewer run-time additions (activation map V plus post map W, before CSE), then
fewer weight-side additions (U), then smaller coefficients, then the route: given > stored > composed > known >
structural > naive.  A candidate whose rounding error can exceed the naive product's by more than GROWTH_LIMIT
(`Scheme.error_growth`: cancellation between large coefficients, e.g. a basis change by 10^10) is dropped; a given
scheme that unstable is refused.  `SchemeResolver.candidates` lists every kept candidate with the winner first
(`python -m codegen show NAME` prints them).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..exact import InexactNumberError, tensor_key
from ..spec.algebra import AlgebraSpec
from ..spec.errors import SpecError
from . import scheme as sch
from .known import known_scheme
from .regroup import regrouped

# The structural route on a builder-made algebra above this dimension is skipped: its analysis grows fast with d
# (about 20 s for the 64-dimensional Cl(6,0) on a 2-core VM, against 3 s for the composed scheme).  Tables
# typed by hand, which have no other route, always get it.
STRUCTURAL_MAX_DIM_DERIVED = 32

ROUTES = ("given", "stored", "composed", "known", "structural", "naive")
_PRIORITY = {kind: t for t, kind in enumerate(ROUTES)}


@dataclass(frozen=True)
class Candidate:
    """One verified scheme for an algebra and the route that gave it.  Candidates order by `cost`; the additions
    and coefficients are only looked at between candidates of equal rank (they are slow to count for a big naive
    scheme)."""

    scheme: sch.Scheme
    route: str          # one of ROUTES

    @cached_property
    def _tie_break(self) -> tuple:
        runtime, weight = self.scheme.additions()
        return (runtime, weight, *self.scheme.coefficient_size(), _PRIORITY[self.route])

    def cost(self) -> tuple:
        """The order candidates are ranked by (smaller is better; see the module docstring)."""
        return (self.scheme.rank, *self._tie_break)

    def __lt__(self, other: "Candidate") -> bool:
        if self.scheme.rank != other.scheme.rank:
            return self.scheme.rank < other.scheme.rank
        return self._tie_break < other._tie_break


#: the largest error growth (`Scheme.error_growth`) a scheme may have: beyond it the scheme's cancellation costs
#: more than 10 bits of accuracy, and another candidate (at worst the naive product, growth 1) is used instead
GROWTH_LIMIT = 2.0 ** 10


def _tensor_key(A: AlgebraSpec) -> tuple:
    return tensor_key(A.T)


class SchemeResolver:
    def __init__(self, algebras: dict[str, AlgebraSpec], spec_dir: Path | None):
        self.spec_dir = None if spec_dir is None else Path(spec_dir)
        self.by_tensor: dict[tuple, list[AlgebraSpec]] = {}
        for A in algebras.values():
            self.by_tensor.setdefault(_tensor_key(A), []).append(A)
        self._registered = {A.key for A in algebras.values()}
        self._memo: dict[tuple, list[Candidate]] = {}
        self._unstable: dict[tuple, list[Candidate]] = {}
        self._active: set[tuple] = set()

    def stored_path(self, A: AlgebraSpec) -> Path:
        if self.spec_dir is None:
            raise ValueError("this resolver has no spec folder")
        return self.spec_dir / "schemes" / f"{A.name}.json"

    def composed(self, A: AlgebraSpec) -> sch.Scheme:
        """The scheme composed from A's derivation (verified exactly)."""
        kind, *args = A.derivation
        if kind == "tensor":
            a, b = (self._piece(X) for X in args)
            s = sch.compose_tensor(a, b, f"composed: {args[0].name} ({a.rank}) x {args[1].name} ({b.rank})")
        elif kind == "basis_change":
            base, P = args
            inner = self._piece(base)
            s = sch.change_basis(inner, P, f"basis change of {base.name}: {inner.provenance}")
        elif kind == "direct_sum":
            parts = [(X, self._piece(X)) for X in args[0]]
            s = sch.direct_sum([p for _, p in parts],
                               "composed: " + " + ".join(f"{X.name} ({p.rank})" for X, p in parts))
        elif kind == "opposite":
            inner = self._piece(args[0])
            s = sch.opposite(inner, f"opposite of {args[0].name}: {inner.provenance}")
        elif kind == "cayley_dickson":
            base, gamma, conj = args
            inner = self._piece(base)
            s = sch.cayley_dickson(inner, gamma, conj, f"Cayley-Dickson double of {base.name}: 4 x {inner.rank} "
                                                       f"({inner.provenance})")
        elif kind == "extension":
            base, theta = args
            inner = self._piece(base)
            s = sch.extension(inner, theta, f"square-zero extension of {base.name}: 3 x {inner.rank} "
                                            f"({inner.provenance})")
        else:
            raise AssertionError(f"unknown derivation {kind!r} of {A.name}")
        if not s.verify(A.T):  # a bug in the builders, not in the user's spec
            raise AssertionError(f"composed scheme for {A.name} failed verification")
        return s

    def _piece(self, X: AlgebraSpec) -> sch.Scheme:
        """The best scheme of a piece of a derivation (or of a recognised structure).  Pieces that are not
        registered algebras skip the structural route: the whole algebra's own structural route already sees
        their structure, and analysing every intermediate piece (a 16-dimensional Kronecker product inside
        `matrix_algebra(4)`) would cost build time for nothing."""
        return self.candidates(X, structural=X.key in self._registered)[0].scheme

    def _local(self, A: AlgebraSpec, structural: bool) -> list[Candidate]:
        """Verified candidates from A itself (the structural route only when `structural`)."""
        cands = [Candidate(sch.naive(A.T), "naive")]
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
            cands.append(Candidate(s, "given"))
        path = None if self.spec_dir is None else self.stored_path(A)
        if path is not None and path.is_file():
            try:
                s = sch.load_file(path, dim=A.dim)
            except (ValueError, KeyError, TypeError, ZeroDivisionError, InexactNumberError) as e:
                raise SpecError(f"cannot read stored scheme: {e}", algebra=A.name, file=str(path))
            if not s.verify(A.T):
                raise SpecError(f"stored scheme is wrong: {s.mismatch(A.T, A.basis)}", algebra=A.name,
                                file=str(path))
            cands.append(Candidate(s, "stored"))
        known = known_scheme(A.T)
        if known is not None and known.verify(A.T):
            cands.append(Candidate(known, "known"))
        if A.derivation is not None:
            cands.append(Candidate(self.composed(A), "composed"))
            # a tensor product's factors regrouped (a basis change transports its base's, regrouped already)
            s = None if A.derivation[0] != "tensor" else \
                regrouped(A, lambda X, structural: self.candidates(X, structural)[0].scheme)
            if s is not None:
                cands.append(Candidate(s, "composed"))
        if not structural or (A.derivation is not None and A.dim > STRUCTURAL_MAX_DIM_DERIVED):
            return cands
        from .structure import recognise           # imports the builders, which import this package's parent
        X = recognise(A.T)
        if X is not None and X.key != A.key:
            s = self._piece(X)
            if s.verify(A.T):
                cands.append(Candidate(s.with_provenance(f"structure: {s.provenance}"), "structural"))
        return cands

    def candidates(self, A: AlgebraSpec, structural: bool = True) -> list[Candidate]:
        """Every verified candidate for A (see the module docstring), the winner first, then by cost.
        `structural=False` leaves out the structural route (see `_piece`)."""
        key = (A.key, structural)
        if A.key in self._active:                   # a twin or structure leading back here: no cycle
            return [Candidate(sch.naive(A.T), "naive")]
        if key not in self._memo:
            self._active.add(A.key)
            try:
                cands = self._local(A, structural)
                for twin in self.by_tensor.get(_tensor_key(A), []):
                    if twin is not A and twin.key != A.key and twin.key not in self._active:
                        for c in self._local(twin, False):
                            cands.append(Candidate(c.scheme.with_provenance(f"{c.scheme.provenance} "
                                                                            f"(via {twin.name})"), c.route))
            finally:
                self._active.discard(A.key)
            stable = [c.route in ("naive", "given") or c.scheme.error_growth(A.T) <= GROWTH_LIMIT for c in cands]
            self._memo[key] = sorted(c for c, ok in zip(cands, stable) if ok)
            self._unstable[key] = sorted(c for c, ok in zip(cands, stable) if not ok)
        return self._memo[key]

    def unstable(self, A: AlgebraSpec, structural: bool = True) -> list[Candidate]:
        """The verified candidates `candidates` dropped for numerical instability (error growth above
        GROWTH_LIMIT), cheapest first."""
        self.candidates(A, structural)
        return self._unstable.get((A.key, structural), [])

    def best(self, A: AlgebraSpec) -> sch.Scheme:
        """The cheapest verified scheme for A (see the module docstring)."""
        return self.candidates(A)[0].scheme


def structural_scheme(T) -> sch.Scheme | None:
    """The scheme the structural route composes for a bare tensor (None when nothing is recognised)."""
    from .structure import recognise

    X = recognise(T)
    if X is None:
        known = known_scheme(T)
        return known
    return SchemeResolver({}, None).best(X)
