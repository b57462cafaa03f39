"""`python -m codegen search NAME`: look for a lower-rank scheme and store it next to the spec.

The search itself (`codegen.search.find_scheme`) sees only the structure tensor.  A result is verified
exactly, compared with the best scheme the build already has, and written to
`<spec_dir>/schemes/<NAME>.json` only when it is better; later builds verify and use it.
"""
from __future__ import annotations

import sys
import time

from ..schemes import SchemeResolver, naive, save_file
from ..schemes.resolve import GROWTH_LIMIT
from ..spec import SpecError
from ..spec.discover import discover

# Best known upper bounds over Q (docs/schemes.md) for the built-in algebras.
KNOWN_BOUNDS = {"R": 1, "C": 3, "Dual": 3, "Cross3": 5, "H": 8, "M2R": 7, "M3R": 23, "M4R": 48, "M2C": 21}


def run_search(args) -> int:
    from .driver import find_scheme

    algebras = discover(args.spec_dir)
    if args.name not in algebras:
        raise SpecError(f"no algebra named {args.name!r} (have: {', '.join(algebras)})")
    A = algebras[args.name]
    resolver = SchemeResolver(algebras, args.spec_dir)
    current = resolver.best(A)
    naive_rank = naive(A.T).rank
    print(f"searching {A.name} (dim {A.dim}): naive rank {naive_rank}, current best {current.rank} "
          f"({current.provenance}); budget {args.budget:g}s, seed {args.seed}"
          + (f", field GF({args.field})" if args.field else ""))
    start = time.perf_counter()
    last = [0.0]

    def progress(best_rank: int, elapsed: float, message: str = "") -> None:
        now = time.perf_counter()
        if now - last[0] >= 0.5:
            last[0] = now
            print(f"\r  best rank {best_rank:>3}  elapsed {elapsed:6.1f}s  {message[:60]:<60}", end="", flush=True)

    start_scheme = None if current.provenance == "naive" else current
    result = find_scheme(A.T, budget_s=args.budget, seed=args.seed, prime=args.field, progress=progress,
                         start=start_scheme)
    elapsed = time.perf_counter() - start
    print()
    how = result.provenance
    found = result.with_provenance(f"searched: {how} (seed {args.seed}, {elapsed:.0f}s)")
    if not found.verify(A.T):  # find_scheme verifies too; never store anything unverified
        raise SpecError("search returned a scheme that does not verify (bug)", algebra=A.name)
    print(f"found rank {found.rank} in {elapsed:.1f}s: {how}")
    bound = KNOWN_BOUNDS.get(A.name)
    if bound is not None and found.rank < bound:
        print("!" * 72 + f"\n!! rank {found.rank} is BELOW the best known bound {bound} for {A.name}: "
              f"keep this certificate\n" + "!" * 72)
    if found.rank >= current.rank:
        print(f"not better than the current best (rank {current.rank}); nothing written")
        return 0
    growth = found.error_growth(A.T)
    if growth > GROWTH_LIMIT:
        print(f"numerically unstable: its rounding error can be {growth:.3g} times the naive product's (limit "
              f"{GROWTH_LIMIT:g}), so the build would not use it; nothing written")
        return 0
    if args.no_save:
        return 0
    path = resolver.stored_path(A)
    unusual = found.unusual_coefficients()
    note = f"coefficients other than 0, +-1, powers of two: {', '.join(unusual)}" if unusual else ""
    save_file(found, path, algebra=A.name, note=note)
    print(f"wrote {path} (verified exactly); run `python -m codegen build` to use it")
    sys.stdout.flush()
    return 0
