"""What every example script shares on the command line: option types that refuse out-of-range values, the run
folder's claim (an existing run is never overwritten silently), and the project's error style.

    def main(argv=None): ...
    if __name__ == "__main__":
        sys.exit(cli.run(main))          # "error: ..." on one line and exit code 2 for a user's mistake

A user's mistake (missing data, a run folder that already holds a run, a checkpoint of another run, an algebra that
is not built) raises `UserError` or one of USER_ERRORS and is printed as one line, like `python -m codegen`;
`ALGEBRANETS_TRACEBACK=1` prints the whole traceback instead.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Callable

from runtime.registry import AlgebraNotBuiltError

from .distributed import leave_after_a_finished_run

__all__ = ["UserError", "USER_ERRORS", "run", "positive_int", "nonnegative_int", "positive_float",
           "nonnegative_float", "names", "int_list", "fraction", "probability", "RUN_FILES", "claim_run_folder",
           "clear_run_folder"]


class UserError(Exception):
    """A mistake in how a script was called (its message says what to change)."""


#: exceptions that are a user's mistake when they reach a script's top level
USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError,
               AlgebraNotBuiltError)
TRACEBACK_ENV = "ALGEBRANETS_TRACEBACK"


def run(main: Callable[[list[str]], object], argv: list[str] | None = None) -> int:
    """Call main(argv) (default sys.argv[1:]); a user's mistake becomes "error: <message>" on stderr and exit
    code 2, Ctrl-C exit code 130.  Returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        main(argv)
    except USER_ERRORS as e:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    leave_after_a_finished_run()
    return 0


def _number(text: str, kind: type, ok: Callable[[float], bool], what: str):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(v, float) and not math.isfinite(v) or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return v


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "an integer >= 1")


def nonnegative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a number > 0")


def nonnegative_float(text: str) -> float:
    return _number(text, float, lambda v: v >= 0, "a number >= 0")


def names(text: str) -> list[str]:
    """Comma-separated names (algebras, tasks): at least one."""
    values = [a.strip() for a in text.split(",") if a.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 0 (seeds; widths are checked by their own type): at least one."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return values


def fraction(text: str) -> float:
    """A fraction in [0, 1] (a point of the schedule)."""
    return _number(text, float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def probability(text: str) -> float:
    """A fraction in [0, 1) (dropout, label smoothing, sparsity, momentum)."""
    return _number(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


#: the files a training run writes into its folder (`examples.training.loop.train`)
RUN_FILES = ("checkpoint.pt", "log.csv", "summary.json", "config.json", "samples.txt")


def claim_run_folder(out: Path, resume: str | None, overwrite: bool, files: tuple[str, ...] = RUN_FILES) -> None:
    """Refuse to start a fresh run in a folder that already holds one (any of `files`), unless resuming it
    (--resume) or replacing it (--overwrite); a run is never overwritten silently."""
    if resume is not None or overwrite:
        return
    found = [f for f in files if (Path(out) / f).exists()]
    if found:
        raise UserError(f"--out {out} already holds a run ({', '.join(found)}): pass --resume to continue it, "
                        f"--overwrite to replace it, or another --out")


def clear_run_folder(out: Path, files: tuple[str, ...] = RUN_FILES) -> None:
    """Remove an old run's files (--overwrite), so nothing of it mixes with the new run."""
    for f in files:
        path = Path(out) / f
        if path.is_file():
            path.unlink()
