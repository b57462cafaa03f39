"""Scheme search: the lowest-rank exactly verified bilinear scheme for a structure tensor.

``find_scheme(T, budget_s=60, seed=0, prime=None, progress=None, start=None) -> Scheme``

Strategy ("compose before searching"):

1. **Wedderburn split.**  If A is unital and associative and has nontrivial central idempotents
   (:func:`codegen.exact.wedderburn.split_algebra`), search every block separately (budget shared by the
   blocks, weighted by dim^2; one-dimensional blocks are solved directly), combine the block schemes by
   direct sum and map back with the exact basis change.  R[S3] = Q x Q x M2(Q) -> 1 + 1 + 7 = 9.
2. **Flip graph** walks (:func:`codegen.search.flipgraph.flip_search`) over GF(2), then GF(3) by default (GF(3)
   sees schemes with 1/2, e.g. split-complex 2), or over the one ``prime`` asked for; primes dividing a
   denominator of T are skipped.  A block isomorphic to M_n(Q) in an odd basis is first moved to the
   exact matrix-unit basis (:func:`codegen.exact.simple.matrix_unit_basis`), where M2 reaches 7 at once,
   and searched there (70 % of the walk budget); the walk in the block's own basis gets the rest when
   the lower bound has not been reached.
3. **ALS + rounding** (:func:`codegen.search.als.als_search`) at ranks below the best found, for d <= 8, with
   the rest of the budget.
4. Strassen's scheme as a last resort for the standard M2 tensor.

Before all of these, the structural route (:func:`codegen.schemes.resolve.structural_scheme`: radical,
centre, matrix units, division parts, Cayley-Dickson halves, composed from known schemes) gives the starting
scheme, so the search never ends above what the algebra's structure gives.

Every phase stops as soon as the proven lower bound (:func:`codegen.search.bounds.lower_bound`: flattening
ranks, Alder-Strassen 2d - t) is reached, which also makes the result independent of wall time in that
case.  The returned scheme is always verified exactly (Fraction arithmetic); the lowest rank wins.
Decisions depend on ``seed`` only; wall time only decides when an unfinished phase stops.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..exact import fraction_array, is_zero_tensor, matrix_tensor
from ..exact.simple import matrix_unit_basis
from ..exact.wedderburn import Split, central_idempotents, split_algebra
from ..schemes import Scheme, change_basis, direct_sum, naive, weight_side_constants
from ..schemes.known import STRASSEN
from ..schemes.resolve import structural_scheme
from .als import als_search
from .bounds import lower_bound
from .flipgraph import flip_search

__all__ = ["find_scheme", "DEFAULT_PRIMES"]

DEFAULT_PRIMES = (2, 3)
ALS_MAX_DIM = 8

Progress = Callable[[int, float, str], None]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
class _Reporter:
    """Throttled progress: at most ~4 calls per second (forced calls bypass the throttle)."""

    def __init__(self, progress: Progress | None, t0: float):
        self.progress = progress
        self.t0 = t0
        self.last = -1.0
        self.last_rank: int | None = None

    def __call__(self, rank: int, message: str, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        self.last_rank = rank
        try:
            self.progress(int(rank), now - self.t0, message)
        except Exception:  # a broken callback must not kill the search
            pass


def _reducible_mod(T: np.ndarray, p: int) -> bool:
    """T can be read mod p (no denominator divisible by p) and is not zero mod p."""
    nonzero = False
    for v in T.reshape(-1):
        if v.denominator % p == 0:
            return False
        if v.numerator % p:
            nonzero = True
    return nonzero


def _roughness(s: Scheme) -> tuple:
    """How costly a scheme is to run, once its constants sit on the weight side: nonzeros of V and W,
    then their largest magnitude, then the size of U's numbers."""
    U, V, W = weight_side_constants(s)
    vw = [x for M in (V, W) for x in M.reshape(-1) if x]
    return (len(vw), max((abs(x) for x in vw), default=0),
            sum(abs(x.numerator) + x.denominator for x in U.reshape(-1) if x))


# --------------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------------
class _Search:
    def __init__(self, seed: int, primes, progress: Progress | None):
        self.seed = seed
        self.primes = primes
        self.t0 = time.monotonic()
        self.report = _Reporter(progress, self.t0)

    # ---- entry for one tensor ------------------------------------------------------------------
    def run(self, T: np.ndarray, budget: float, seed: int, *, allow_split: bool = True,
            allow_units: bool = True, start=None, rank_offset: int = 0,
            primitive: bool = False, stop_rank: int = 0) -> tuple[Scheme, str]:
        """Search T within ``budget`` seconds.  ``primitive``: the caller has proven that A has no
        central idempotent besides 0 and 1 (a block of a certified split), which with rad A = 0 means
        A is simple and the Alder-Strassen bound is 2d - 1.  ``stop_rank``: stop as soon as a scheme of
        at most this rank is found (a campaign's target; the proven lower bound stops the search too)."""
        d = T.shape[0]
        deadline = time.monotonic() + max(0.0, budget)
        best = naive(T)
        how = "naive"
        if start is not None and start.verify(T) and start.rank < best.rank:
            best, how = start, start.provenance or "start scheme"
        if is_zero_tensor(T):
            return Scheme.of([], [], [], dim=d), "zero tensor"
        if d == 1:
            return Scheme.of([[T[0, 0, 0]]], [[1]], [[1]]), "direct (1-dim)"

        idems = central_idempotents(T, seed=seed) if allow_split else None
        if idems is not None and len(idems[0]) > 1:
            sp = split_algebra(T, seed=seed, idempotents=idems)
            if sp is not None:
                out = self._run_split(T, sp, deadline, seed, rank_offset)
                if out is not None and out[0].rank <= best.rank:
                    return out
        simple = primitive or (idems is not None and len(idems[0]) == 1 and idems[1])
        proven = lower_bound(T, simple=simple)
        lb = max(proven, stop_rank)
        self.report(rank_offset + best.rank, f"dim {d}: naive rank {best.rank}, lower bound {proven}")
        if best.rank <= lb:
            return best, how
        best, how = self._run_unsplit(T, d, best, how, lb, deadline, seed, allow_units, start,
                                      rank_offset)
        return best, how

    # ---- direct product of blocks --------------------------------------------------------------
    def _run_split(self, T, sp: Split, deadline: float, seed: int, rank_offset: int):
        weights = [m * m if m > 1 else 0 for m in sp.dims]
        ranks = [naive(B).rank for B in sp.blocks]
        schemes, hows = [], []
        for k, B in enumerate(sp.blocks):
            rest = sum(weights[k:]) or 1
            share = max(0.0, deadline - time.monotonic()) * weights[k] / rest
            off = rank_offset + sum(ranks[:k]) + sum(ranks[k + 1:])
            s, h = self.run(B, share, seed * 1_000_003 + k, allow_split=False, rank_offset=off,
                            primitive=sp.primitive)
            ranks[k] = s.rank
            schemes.append(s)
            hows.append(f"[{sp.dims[k]}: {h}]")
            self.report(rank_offset + sum(ranks), f"block {k + 1}/{len(sp.blocks)} (dim {sp.dims[k]}) "
                        f"rank {ranks[k]}", force=True)
        how = f"Wedderburn split {sp.label}: " + ", ".join(hows)
        out = change_basis(direct_sum(schemes, how), sp.Pinv, Pinv=sp.P)
        if not out.verify(T):  # cannot happen; never return anything unverified
            return None
        return out, how

    # ---- one block that does not split ---------------------------------------------------------
    def _run_unsplit(self, T, d, best, how, lb, deadline, seed, allow_units, start, rank_offset):
        units = None
        if allow_units and d >= 4:
            n = int(round(d ** 0.5))
            if n * n == d and not np.all(T == matrix_tensor(n)):
                units = matrix_unit_basis(T, seed=seed)
        use_als = d <= ALS_MAX_DIM
        now = time.monotonic()
        flip_end = now + (deadline - now) * (0.7 if use_als else 1.0)

        def better(cand: Scheme | None, label: str, nicer_ok: bool = False) -> None:
            nonlocal best, how
            if cand is None or not cand.verify(T):
                return
            if cand.rank < best.rank or (nicer_ok and cand.rank == best.rank
                                         and _roughness(cand) < _roughness(best)):
                best, how = cand, label
                self.report(rank_offset + best.rank, f"dim {d}: rank {best.rank} by {label}", force=True)

        # M_n(Q) in an odd basis: the exact matrix-unit basis first (the standard M_n tensor is where
        # walks are known to work: M2 -> 7 at once), then the walk in the given basis
        if units is not None:
            P, Pinv, n = units
            Tm = matrix_tensor(n)
            units_end = now + (flip_end - now) * 0.7
            s, h = self.run(Tm, max(0.0, units_end - time.monotonic()), seed, allow_split=False,
                            allow_units=False, rank_offset=rank_offset, primitive=True)
            better(change_basis(s, Pinv, Pinv=P), f"matrix units M{n}: {h}")
            units_time = time.monotonic() - now
        if best.rank > lb:
            self._flips(T, d, lb, flip_end, seed, start, better, rank_offset, lambda: best.rank)
        elif units is not None:
            # optimal already; a short walk in the given basis often gives smaller coefficients
            end = min(flip_end, time.monotonic() + max(2.0, 3 * units_time))
            seen = [best.rank + 1]

            def nicer(cand, label):
                if cand is not None:
                    seen[0] = min(seen[0], cand.rank)
                better(cand, label, nicer_ok=True)

            self._flips(T, d, lb, end, seed, start, nicer, rank_offset, lambda: seen[0])
        # ALS below the best rank found
        while use_als and best.rank > lb and time.monotonic() < deadline - 0.05:
            r = best.rank - 1
            self.report(rank_offset + best.rank, f"dim {d}: ALS at rank {r}", force=True)
            cand = als_search(T, r, budget_s=deadline - time.monotonic(), seed=seed,
                              progress=lambda rk, el, msg: self.report(rank_offset + best.rank, msg))
            if cand is None:
                break
            better(cand, f"ALS rank {cand.rank} + rounding")
        if best.rank > 7 and d == 4 and np.all(T == matrix_tensor(2)):
            better(STRASSEN, "known scheme (Strassen)")
        return best, how

    def _flips(self, T, d, lb, end, seed, start, better, rank_offset, current_rank):
        primes = [p for p in self.primes if _reducible_mod(T, p)]
        if not primes and self.primes == DEFAULT_PRIMES:
            primes = [p for p in (5, 7, 11) if _reducible_mod(T, p)][:2]
        for idx, p in enumerate(primes):
            now = time.monotonic()
            if current_rank() <= lb or now >= end:
                break
            budget = (end - now) / (len(primes) - idx)
            st = start if start is not None and start.verify(T) else None

            def cb(rank, elapsed=0.0, *rest, _p=p):
                try:
                    r = min(int(rank), current_rank())
                except (TypeError, ValueError):
                    r = current_rank()
                self.report(rank_offset + r, f"dim {d}: flip graph GF({_p})")

            try:
                cand = flip_search(T, prime=p, budget_s=budget, seed=seed, start=st, target_rank=lb,
                                   progress=cb)
            except Exception as exc:  # a failing walk must not kill the search
                self.report(rank_offset + current_rank(), f"flip graph GF({p}) failed: {exc}",
                            force=True)
                continue
            better(cand, f"flip graph GF({p}) + Hensel lift")


def find_scheme(T, *, budget_s: float = 60.0, seed: int = 0, prime: int | None = None,
                progress: Progress | None = None, start=None, target: int | None = None):
    """Lowest-rank exactly verified rational scheme for the structure tensor T found within budget_s.

    Returns an exactly verified `Scheme` whose provenance says how it was found.  Each term's constants sit on the weight
    side: the rows of V and W are primitive integer vectors.  ``prime``: run the flip graph over this
    GF(p) only (default: GF(2), then GF(3)).  ``progress(best_rank, elapsed_s, message)`` is called at
    most ~4 times per second.  ``start``: an exact scheme (U, V, W) to start the walks from; it is also
    the fallback result if nothing better is found.  ``target``: stop as soon as a scheme of at most this
    rank is found (it is not searched per Wedderburn block).  Reproducible for a seed whenever the search
    reaches the proven lower bound (otherwise wall time decides where unfinished phases stop).
    """
    T = fraction_array(T)
    if T.ndim != 3 or len(set(T.shape)) != 1:
        raise ValueError(f"structure tensor must have shape (d, d, d), got {T.shape}")
    primes = DEFAULT_PRIMES if prime is None else (int(prime),)
    if start is not None:
        start = Scheme.of(*start, provenance=getattr(start, "provenance", ""))
    structural = structural_scheme(T)          # the algebra's structure first (codegen.schemes.structure)
    if structural is not None and (start is None or structural.rank < start.rank):
        start = structural.with_provenance(f"structure: {structural.provenance}")
    search = _Search(seed, primes, progress)
    found, how = search.run(T, float(budget_s), seed, start=start, stop_rank=int(target or 0))
    if found.rank:
        moved = weight_side_constants(found)
        if moved.verify(T):
            found = moved
    if not found.verify(T):  # pragma: no cover - every path verifies; this is the last guard
        found, how = naive(T), "naive (search result failed verification)"
    search.report(found.rank, f"done: rank {found.rank} ({how})", force=True)
    return found.with_provenance(how)
