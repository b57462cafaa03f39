"""`python -m codegen build | list | show NAME | check | search NAME`."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from .build import DEFAULT_SPEC_DIR, build, check, installed_location, resolve_out_dir
from .exact import nonzero_pairs
from .exact import properties as props
from .locations import rebuild_command
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


def cmd_build(args) -> int:
    start = time.perf_counter()
    out = resolve_out_dir(args.spec_dir, args.out)
    built = build(args.spec_dir, out, only=args.only, progress=print)
    print(f"built {len(built)} algebra(s) into {out} in {time.perf_counter() - start:.1f}s")
    if args.compile_cpu:
        # the runtime compiles (a separate process: the generator never imports the runtime or torch)
        names = [b.algebra.name for b in built] if args.only else []
        cmd = [sys.executable, "-m", "runtime.cpu", "compile", "--generated", str(out), *names]
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


def cmd_show(args) -> int:
    algebras = discover(args.spec_dir)
    if args.name not in algebras:
        raise SpecError(f"no algebra named {args.name!r} (have: {', '.join(algebras)})")
    A = algebras[args.name]
    p = props.compute(A.T, A.basis)
    s = SchemeResolver(algebras, args.spec_dir).best(A)
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
                   help="then compile the CPU kernels of what was built (python -m runtime.cpu compile), any size")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("list", help="list the algebras with their dimension and rank")
    common(p, out=False)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="multiplication table, properties and scheme of one algebra")
    common(p, out=False)
    p.add_argument("name")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("check", help="is the generated folder complete and current?")
    common(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("search", help="search for a lower-rank bilinear scheme")
    common(p, out=False)
    p.add_argument("name")
    p.add_argument("--budget", type=float, default=60.0, help="seconds of search")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--field", type=int, default=None, help="prime p of the field GF(p) for the flip graph")
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
