"""Run the scheme search on every built-in algebra from its structure tensor alone (no spec scheme, no
composition) and report the best rank reached and when it was first reached.

    python benchmarks/search_report.py [--budget SECONDS] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import time

from codegen.build import DEFAULT_SPEC_DIR
from codegen.spec.discover import discover
from codegen.exact import nonzero_pairs
from codegen.search import find_scheme

BUDGETS = {"R": 2, "C": 5, "Dual": 5, "Cross3": 10, "H": 20, "M2R": 10, "M3R": 30, "M2C": 30, "M4R": 60, "O": 30}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=None, help="override the per-algebra budget")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    algebras = discover(DEFAULT_SPEC_DIR)
    print("| algebra | d | naive | rank found by search | first reached after | budget | how |")
    print("|---|---|---|---|---|---|---|")
    for name, A in algebras.items():
        if args.only and name not in args.only:
            continue
        budget = args.budget or BUDGETS.get(name, 30)
        first: dict[int, float] = {}

        def progress(rank: int, elapsed: float, message: str = "") -> None:
            first.setdefault(rank, elapsed)

        start = time.perf_counter()
        found = find_scheme(A.T, budget_s=budget, seed=args.seed, progress=progress)
        total = time.perf_counter() - start
        rank, how = found.rank, found.provenance
        naive = len(nonzero_pairs(A.T))
        reached = first.get(rank, total)
        print(f"| {name} | {A.dim} | {naive} | {rank} | {reached:.1f}s | {budget:g}s (ran {total:.0f}s) | {how} |",
              flush=True)


if __name__ == "__main__":
    main()
