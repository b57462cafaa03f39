"""`python -m codegen build | list | show NAME | check | search NAME`."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .build import DEFAULT_SPEC_DIR, build, check, installed_location, resolve_out_dir
from .exact import nonzero_pairs
from .exact import properties as props
from .contract.locations import GENERATED_ENV, rebuild_command
from .contract.manifest import MANIFEST_NAME
from .schemes import SchemeResolver
from .spec import BuildError, SpecError
from .spec.discover import discover


def _cell(T, i: int, j: int, basis) -> str:
    return props.format_element(list(T[i, j, :]), basis)


def multiplication_table(A) -> str:
    """The products e_i*e_j as a grid (rows: left factor)."""
    cells = [[_cell(A.T, i, j, A.basis) for j in range(A.dim)] for i in range(A.dim)]
    width = max(len(c) for row in cells for c in row)
    width = max(width, max(len(b) for b in A.basis))
    head = " " * (width + 2) + " ".join(f"{b:>{width}}" for b in A.basis)
    rows = [f"{A.basis[i]:>{width}} |" + " ".join(f"{c:>{width}}" for c in cells[i]) for i in range(A.dim)]
    return "\n".join([head, " " * (width + 1) + "+" + "-" * (len(head) - width - 1)] + rows)


def scheme_text(A, s) -> str:
    """The scheme as formulas: m1 = (x0 + x1)*y0 ... z0 = m1 - m3."""
    from .emit.formulas import combination, programs

    lines = []
    for t in range(s.rank):
        left = combination([(c, f"x{i}") for i, c in enumerate(s.U[t]) if c != 0], "text")
        right = combination([(c, f"y{i}") for i, c in enumerate(s.V[t]) if c != 0], "text")
        lines.append(f"  m{t + 1} = ({left})*({right})")
    for k in range(s.dim):
        out = combination([(s.W[t, k], f"m{t + 1}") for t in range(s.rank) if s.W[t, k] != 0], "text")
        lines.append(f"  z{k} [{A.basis[k]}] = {out}")
    progs = programs(s)
    counts = ", ".join(f"{k} {p.additions}" for k, p in progs.items())
    return "\n".join(lines) + f"\n  additions after CSE: {counts} (weight side is precomputed per weight update)"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_build(args) -> int:
    start = time.perf_counter()
    out = resolve_out_dir(args.spec_dir, args.out)
    built = build(args.spec_dir, out, only=args.only, progress=_stderr)
    for b in built:                 # only now: a build that fails writes nothing and reports nothing as built
        print(b.progress_line())
    print(f"built {len(built)} algebra(s) into {out} in {time.perf_counter() - start:.1f}s")
    if args.compile_cpu:
        # the runtime compiles (a separate process: the generator never imports the runtime or torch)
        names = [b.algebra.name for b in built] if args.only else []
        cmd = [sys.executable, "-m", "runtime.kernels.cpu", "compile", "--generated", str(out), *names]
        print("compiling the CPU kernels: " + " ".join(cmd[1:]), flush=True)
        return subprocess.run(cmd).returncode
    return 0


def cmd_list(args) -> int:
    algebras = discover(args.spec_dir)
    resolver = SchemeResolver(algebras, args.spec_dir)
    print(f"{'name':<8} {'dim':>3} {'naive':>5} {'rank':>4}  title")
    for name, A in algebras.items():
        print(f"{name:<8} {A.dim:>3} {len(nonzero_pairs(A.T)):>5} {resolver.best(A).rank:>4}  {A.title}")
    return 0


def spec_dir_of_build(folder: Path) -> Path | None:
    """The spec folder a build folder was built from (recorded in its index), or None."""
    try:
        index = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
        return (Path(folder) / index["spec_dir"]).resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_algebra(name: str, spec_dir: Path, out: Path | None) -> tuple[dict, Path]:
    """(the algebras of the spec folder that defines `name`, that folder): --spec-dir, else the specs that the
    build folder --out (or $ALGEBRANETS_GENERATED) was built from.  SpecError naming where it looked."""
    tried = []
    candidates = [spec_dir]
    for folder in (out, os.environ.get(GENERATED_ENV) or None):
        if folder is not None:
            recorded = spec_dir_of_build(Path(folder))
            if recorded is not None and recorded.is_dir():
                candidates.insert(0 if folder is out else len(candidates), recorded)
    for candidate in dict.fromkeys(Path(c).resolve() for c in candidates):
        algebras = discover(candidate)
        if name in algebras:
            return algebras, candidate
        tried.append(f"{candidate} (has: {', '.join(algebras) or 'none'})")
    raise SpecError(f"no algebra named {name!r} in {'; '.join(tried)}; for specs of your own pass --spec-dir "
                    f"FOLDER, or --out FOLDER of their build")


def cmd_show(args) -> int:
    algebras, spec_dir = find_algebra(args.name, args.spec_dir, args.out)
    A = algebras[args.name]
    p = props.compute(A.T, A.basis)
    resolver = SchemeResolver(algebras, spec_dir)
    candidates = resolver.candidates(A)
    s = candidates[0].scheme
    print(f"{A.name}: {A.title} (dim {A.dim}, defined in {A.source})")
    print(f"basis: {', '.join(A.basis)}\n")
    print(multiplication_table(A) + "\n")
    print("properties:")
    for key in ("associative", "commutative", "anticommutative", "alternative", "flexible", "jacobi"):
        ok = getattr(p, key)
        why = "" if ok else f"  ({p.counterexamples.get(key, '')})"
        print(f"  {key:<16} {'yes' if ok else 'no'}{why}")
    print(f"  {'unit':<16} {props.format_element(p.unit, A.basis) if p.unit else 'none'}")
    if p.zero_divisor:
        x, y = p.zero_divisor
        print(f"  {'zero divisors':<16} yes: ({props.format_element(x, A.basis)})*({props.format_element(y, A.basis)}) = 0")
    else:
        print(f"  {'zero divisors':<16} none found among simple candidates")
    print(f"\nscheme: rank {s.rank} ({s.provenance})")
    if s.unusual_coefficients():
        print(f"  note: coefficients other than 0, +-1, powers of two: {', '.join(s.unusual_coefficients())}")
    print(scheme_text(A, s))
    print("\nroutes considered (lowest rank wins; ties: fewer run-time additions, then weight-side additions, then "
          "smaller coefficients, then given > stored > composed > known > structural > naive):")
    for t, c in enumerate(candidates):
        runtime, weight = c.scheme.additions()
        verdict = "chosen" if t == 0 else "lost"
        print(f"  {verdict:<6} {c.route:<10} rank {c.scheme.rank:>4}, additions {runtime} run-time + {weight} weight "
              f"side, largest coefficient {c.scheme.coefficient_size()[0]}: {c.scheme.provenance}")
    for c in resolver.unstable(A):
        print(f"  unstable {c.route:<8} rank {c.scheme.rank:>4}, dropped: its rounding error can be "
              f"{c.scheme.error_growth(A.T):.3g} times the naive product's: {c.scheme.provenance}")
    return 0


def cmd_check(args) -> int:
    out = resolve_out_dir(args.spec_dir, args.out)
    problems = check(args.spec_dir, out)
    for p in problems:
        print(p)
    if problems:
        print(f"{out} is stale or incomplete: run `{rebuild_command(args.spec_dir, out)}`")
        return 1
    print("generated code is complete and current")
    return 0


def cmd_search(args) -> int:
    from .search.cli import run_search

    installed = installed_location(args.spec_dir)
    if installed is not None and not args.no_save:      # refuse before spending the budget
        raise BuildError(f"the specs in {Path(args.spec_dir).resolve()} are installed (in {installed}), where a "
                         f"better scheme cannot be stored: copy the spec folder and pass --spec-dir, or pass "
                         f"--no-save")
    return run_search(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codegen", description="AlgebraNets code generator")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, out=True):
        p.add_argument("--spec-dir", type=Path, default=DEFAULT_SPEC_DIR, help="folder of algebra specs")
        if out:
            p.add_argument("--out", type=Path, default=None,
                           help="output folder (required with your own --spec-dir; for the built-in specs: "
                                "generated/ in a checkout, the user cache when installed)")

    p = sub.add_parser("build", help="check every algebra and generate code")
    common(p)
    p.add_argument("--only", action="append", metavar="NAME", help="build only this algebra (repeatable)")
    p.add_argument("--compile-cpu", action="store_true",
                   help="then compile the CPU kernels of what was built (python -m runtime.kernels.cpu compile), any size")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("list", help="list the algebras with their dimension and rank")
    common(p, out=False)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="multiplication table, properties and scheme of one algebra")
    common(p, out=False)
    p.add_argument("--out", type=Path, default=None,
                   help="a build folder: show the algebra from the specs it was built from")
    p.add_argument("name")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("check", help="is the generated folder complete and current?")
    common(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("search", help="search for a lower-rank bilinear scheme")
    common(p, out=False)
    p.add_argument("name")
    p.add_argument("--budget", type=positive_seconds, default=60.0, help="seconds of search")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--seeds", default=None, metavar="A:B",
                   help="a campaign: seeds A..B-1 one after the other, each with the whole budget")
    p.add_argument("--target", type=int, default=None, metavar="R", help="stop once a scheme of rank <= R is found")
    p.add_argument("--log", type=Path, default=None, metavar="FILE",
                   help="append each finished seed to FILE (JSON lines); seeds already there are skipped")
    p.add_argument("--field", type=prime, default=None, help="prime p of the field GF(p) for the flip graph")
    p.add_argument("--no-save", action="store_true", help="do not write schemes/<NAME>.json")
    p.set_defaults(func=cmd_search)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except BrokenPipeError:         # `python -m codegen show H | head`: the reader left; not an error of ours
        quiet_stdout()
        return 0
    except KeyboardInterrupt:
        print("error: interrupted (nothing was written)", file=sys.stderr)
        return 130


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush into a closed pipe stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def prime(text: str) -> int:
    """argparse type: a prime number (the field GF(p))."""
    try:
        p = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a prime such as 2, 3 or 5, got {text!r}") from None
    if p < 2 or any(p % q == 0 for q in range(2, int(p ** 0.5) + 1)):
        raise argparse.ArgumentTypeError(f"the field GF(p) needs a prime p, got {p}")
    return p


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (0 < v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number of seconds, got {text}")
    return v


def seed(text: str) -> int:
    """argparse type: a seed >= 0 (what numpy's generators accept)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"the seed must be >= 0, got {v}")
    return v
