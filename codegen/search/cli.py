"""`python -m codegen search NAME`: look for a lower-rank scheme and store it next to the spec.

The search itself (`codegen.search.find_scheme`) sees only the structure tensor.  One run searches one seed;
a campaign (`--seeds A:B`) runs seeds A, A+1, ..., B-1 one after the other, each with the whole budget, each
starting from the best scheme known so far, and stops early once `--target R` is reached.  With `--log FILE`
every finished seed is appended to FILE (one JSON object a line: seed, budget, field, rank, seconds); a campaign
run again with the same log skips the seeds already logged with the same budget and field (resumable).

A result is verified exactly, compared with the best scheme the build already has, and written to
`<spec_dir>/schemes/<NAME>.json` only when it is better, with its provenance (the method, the command, the seed,
budget, field and the time it took); later builds verify and use it.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from ..schemes import SchemeResolver, naive, save_file
from ..schemes.resolve import GROWTH_LIMIT
from ..spec import SpecError
from ..spec.discover import discover

# Best known upper bounds over Q (docs/schemes.md) for the built-in algebras.
KNOWN_BOUNDS = {"R": 1, "C": 3, "Dual": 3, "Cross3": 5, "H": 8, "M2R": 7, "M3R": 23, "M4R": 48, "M2C": 21, "O": 32}


def parse_seeds(text: str | None, seed: int) -> range:
    """`--seeds A:B` (B exclusive) or the single `--seed`."""
    if text is None:
        return range(seed, seed + 1)
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise SpecError(f"--seeds takes A:B (two integers, B exclusive), got {text!r}") from None
    if b <= a:
        raise SpecError(f"--seeds {text}: the range is empty (B must be larger than A)")
    return range(a, b)


def _logged(log: Path | None, budget: float, field: int | None) -> dict[int, dict]:
    """Seeds already searched with this budget and field, from the campaign log."""
    if log is None or not log.is_file():
        return {}
    done = {}
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("budget") == budget and entry.get("field") == field:
            done[int(entry["seed"])] = entry
    return done


def _command(args, seed: int) -> str:
    words = ["python", "-m", "codegen", "search", args.name, "--budget", f"{args.budget:g}", "--seed", str(seed)]
    if args.field:
        words += ["--field", str(args.field)]
    return shlex.join(words)


def run_search(args) -> int:
    from .driver import find_scheme

    algebras = discover(args.spec_dir)
    if args.name not in algebras:
        raise SpecError(f"no algebra named {args.name!r} (have: {', '.join(algebras)})")
    A = algebras[args.name]
    seeds = parse_seeds(getattr(args, "seeds", None), args.seed)
    target = getattr(args, "target", None)
    log = getattr(args, "log", None)
    log = None if log is None else Path(log)
    resolver = SchemeResolver(algebras, args.spec_dir)
    current = resolver.best(A)
    naive_rank = naive(A.T).rank
    print(f"searching {A.name} (dim {A.dim}): naive rank {naive_rank}, current best {current.rank} "
          f"({current.provenance}); budget {args.budget:g}s per seed, seeds {seeds.start}..{seeds.stop - 1}"
          + (f", field GF({args.field})" if args.field else "") + (f", target {target}" if target else ""))
    done = _logged(log, args.budget, args.field)
    best = current
    wrote = False
    for seed in seeds:
        if target is not None and best.rank <= target:
            print(f"target {target} reached; stopping")
            break
        if seed in done:
            print(f"seed {seed}: already in {log} (rank {done[seed].get('rank')}); skipped")
            continue
        found, elapsed, first = _one_seed(find_scheme, A, args, seed, best, target)
        print(f"seed {seed}: rank {found.rank} in {elapsed:.1f}s (first reached after {first:.1f}s)")
        if log is not None:
            with log.open("a") as f:
                f.write(json.dumps({"algebra": A.name, "seed": seed, "budget": args.budget, "field": args.field,
                                    "rank": found.rank, "seconds": round(elapsed, 1),
                                    "first_reached_s": round(first, 1), "how": found.provenance}) + "\n")
        bound = KNOWN_BOUNDS.get(A.name)
        if bound is not None and found.rank < min(bound, best.rank):
            print("!" * 72 + f"\n!! rank {found.rank} is BELOW the best known bound {bound} for {A.name}: "
                  f"keep this certificate\n" + "!" * 72)
        if found.rank >= best.rank:
            continue
        growth = found.error_growth(A.T)
        if growth > GROWTH_LIMIT:
            print(f"seed {seed}: numerically unstable: its rounding error can be {growth:.3g} times the naive "
                  f"product's (limit {GROWTH_LIMIT:g}), so the build would not use it; not stored")
            continue
        best = found
        if not args.no_save:
            path = resolver.stored_path(A)
            unusual = found.unusual_coefficients()
            note = f"coefficients other than 0, +-1, powers of two: {', '.join(unusual)}" if unusual else ""
            save_file(found, path, algebra=A.name, note=note)
            wrote = True
            print(f"wrote {path} (verified exactly)")
    if best.rank >= current.rank:
        print(f"not better than the current best (rank {current.rank}); nothing written")
    elif wrote:
        print("run `python -m codegen build` to use it")
    sys.stdout.flush()
    return 0


def _one_seed(find_scheme, A, args, seed: int, start, target):
    """One seed's search: (the verified scheme with its provenance, seconds, seconds until its rank was first
    reached)."""
    t0 = time.perf_counter()
    last = [0.0]
    first = {}

    def progress(best_rank: int, elapsed: float, message: str = "") -> None:
        first.setdefault(int(best_rank), time.perf_counter() - t0)
        now = time.perf_counter()
        if now - last[0] >= 0.5:
            last[0] = now
            print(f"\r  seed {seed}: best rank {best_rank:>3}  elapsed {elapsed:6.1f}s  {message[:50]:<50}", end="",
                  flush=True)

    start_scheme = None if start.provenance == "naive" else start
    result = find_scheme(A.T, budget_s=args.budget, seed=seed, prime=args.field, progress=progress,
                         start=start_scheme, target=target)
    elapsed = time.perf_counter() - t0
    print()
    reached = first.get(result.rank, elapsed)
    if result.rank >= start.rank:                    # nothing better: the start scheme as it was
        return result, elapsed, reached
    field = f"GF({args.field})" if args.field else "GF(2), GF(3)"
    found = result.with_provenance(f"searched: {result.provenance}; `{_command(args, seed)}` (seed {seed}, "
                                   f"budget {args.budget:g}s, field {field}; rank {result.rank} first reached after "
                                   f"{reached:.0f}s, run {elapsed:.0f}s)")
    if not found.verify(A.T):  # find_scheme verifies too; never store anything unverified
        raise SpecError("search returned a scheme that does not verify (bug)", algebra=A.name)
    return found, elapsed, reached
