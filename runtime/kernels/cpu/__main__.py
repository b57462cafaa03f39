"""`python -m runtime.kernels.cpu compile [NAME ...] [--generated DIR]`: compile the CPU kernels ahead of first use.

Compiles (or finds in the cache) the torch ops and the kernels of every named algebra (default: every algebra
in the generated folder, the built-in one by default), whatever their size: the first-use limit
(ALGEBRANETS_CPU_MAX_TERMS) does not apply.  The target is the machine's own unless ALGEBRANETS_CPU_MARCH names
another.  Prints one line per library with its compile time; exit status 1 when one failed.
"""
from __future__ import annotations

import argparse
import sys
import time

from . import precompile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.kernels.cpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("compile", help="compile the CPU kernels of built algebras ahead of first use")
    p.add_argument("names", nargs="*", help="algebras to compile (default: all in the folder)")
    p.add_argument("--generated", help="generated folder (default: the built-in algebras')")
    args = ap.parse_args(argv)
    failed = 0
    for name, seconds, error in precompile(args.names or None, args.generated):
        if error is None:
            print(f"{name:12s} ready ({seconds:.1f} s)", flush=True)
        else:
            failed += 1
            print(f"{name:12s} FAILED: {error}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
