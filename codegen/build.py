"""The build: discover specs, check them, choose schemes, render files, write them atomically.

Everything is computed and rendered in memory first; only when every algebra succeeded are files
written, into a temporary folder that is then swapped in, so a failing spec leaves `generated/` as it was.
Output is byte-identical for identical inputs (no timestamps, sorted JSON, relative paths).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import site
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jinja2
import numpy as np

from . import __version__
from .contract import digest
from .contract import manifest as manifest_format
from .contract.locations import BUILTIN_SPEC_DIR, PACKAGE_ROOT, builtin_out_dir, is_builtin_spec_dir, is_checkout
from .contract.manifest import MANIFEST_NAME
from .emit import cpu as cpu_emit
from .emit import cuda as cuda_emit
from .emit import formulas
from .exact import UnrepresentableNumberError, nonzero_pairs, require_representable
from .exact import properties as props
from .exact.fold import fold_plan
from .schemes import Scheme, SchemeResolver
from .spec import CLAIM_NAMES, AlgebraSpec, BuildError, SpecError
from .spec.discover import discover

DEFAULT_SPEC_DIR = BUILTIN_SPEC_DIR
INDEX_NAME = MANIFEST_NAME      # the index of an output folder, beside its algebra folders


def _text(value) -> str:
    """User text (a title, a path, a scheme's provenance) for one line of a comment or docstring in any generated
    file: escaped as in a JSON string, so it holds no newline, quote, backslash or non-ASCII character raw."""
    return json.dumps(str(value))[1:-1]


_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "emit" / "templates")),
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                          keep_trailing_newline=True, autoescape=False)
_env.filters["text"] = _text


@dataclass
class BuiltAlgebra:
    """One algebra checked and rendered: its files (relative name -> bytes) and its manifest."""

    algebra: AlgebraSpec
    properties: props.Properties
    scheme: Scheme
    files: dict[str, bytes]
    manifest: dict

    def progress_line(self) -> str:
        a = self.algebra
        naive = self.manifest["scheme"]["naive_multiplications"]
        tags = " ".join(self.properties.summary(a.basis))
        return (f"{a.name:<8} dim {a.dim:<3} {tags}\n         multiplications {naive} -> {self.scheme.rank} "
                f"({self.scheme.provenance})")


def check_claims(A: AlgebraSpec, p: props.Properties) -> None:
    """A false claim fails the build with the counterexample."""
    for claim in CLAIM_NAMES:
        if claim not in A.claims:
            continue
        claimed, actual = A.claims[claim], p.holds(claim)
        if claimed and not actual:
            raise SpecError(f"claim {claim}=True is false: {p.counterexamples.get(claim, '')}", algebra=A.name,
                            file=A.source)
        if not claimed and actual:
            raise SpecError(f"claim {claim}=False is false: the algebra is {claim}", algebra=A.name, file=A.source)
    if A.unit_name is not None:
        e = tuple(1 if b == A.unit_name else 0 for b in A.basis)
        if p.unit is None or tuple(p.unit) != e:
            raise SpecError(f"declared unit {A.unit_name!r} is not a two-sided unit "
                            f"({p.counterexamples.get('unital', 'the unit is ' + props.format_element(p.unit, A.basis))})",
                            algebra=A.name, file=A.source)


def _rel(path: str | Path | None, base: Path) -> str:
    if path is None:
        return "<unknown>"
    return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()


class StageTimer:
    """Reports the stages of one algebra's build that take a while (>= SLOW seconds): `with timer("scheme"): ...`
    calls report("[  12.3s] Cl_6_0: scheme 11.9s") afterwards, with the time since `start` in brackets."""

    SLOW = 1.0
    #: the build reports each algebra as it starts once it has run this long (seconds)
    QUIET = 2.0

    def __init__(self, name: str, report: Callable[[str], None] | None, start: float):
        self.name, self.report, self.start = name, report, start

    @contextlib.contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        yield
        took = time.perf_counter() - t0
        if self.report is not None and took >= self.SLOW:
            self.report(f"[{time.perf_counter() - self.start:7.1f}s] {self.name}: {stage} took {took:.1f}s")


def build_one(A: AlgebraSpec, resolver: SchemeResolver, spec_dir: Path, out_dir: Path, spec_hash: str,
              tool_hash: str, timer: StageTimer | None = None) -> BuiltAlgebra:
    """Check, resolve and render one algebra in memory (nothing is written).  `timer` reports slow stages."""
    timer = timer or StageTimer(A.name, None, time.perf_counter())
    if not nonzero_pairs(A.T):
        raise SpecError("every product is zero (the zero algebra): a layer over it would output only its bias; "
                        "give at least one nonzero product", algebra=A.name, file=A.source)
    check_coefficients(A, "structure constant", _structure_entries(A))
    with timer("properties"):
        p = props.compute(A.T, A.basis)
        check_claims(A, p)
    with timer("scheme"):
        s = resolver.best(A)
    check_coefficients(A, f"coefficient of the scheme ({s.provenance})",
                       ((f"{M}[{r}][{c}]", v) for M, X in (("U", s.U), ("V", s.V), ("W", s.W))
                        for (r, c), v in np.ndenumerate(X)))
    with timer("fold plan"):
        plan = fold_plan(A.T)
    check_coefficients(A, "fold-plan constant", _plan_entries(plan))
    try:
        with timer("code"):
            return _render(A, p, s, plan, resolver, spec_dir, out_dir, spec_hash, tool_hash)
    except UnrepresentableNumberError as e:
        raise SpecError(f"{e} (a constant the generator derived from the table)", algebra=A.name,
                        file=A.source) from None


def _structure_entries(A: AlgebraSpec):
    """(label, value) of each nonzero structure constant: ("i*j -> k", T[i, j, k])."""
    for (i, j, k), v in np.ndenumerate(A.T):
        if v != 0:
            yield f"{A.basis[i]}*{A.basis[j]} (component {A.basis[k]})", v


def _plan_entries(plan):
    arrays = [("block", plan.block)]
    if plan.change_in is not None:
        arrays += [("change in", plan.change_in), ("change out", plan.change_out)]
    for label, X in arrays:
        for idx, v in np.ndenumerate(X):
            yield f"{label}{list(idx)}", v


def check_coefficients(A: AlgebraSpec, kind: str, entries) -> None:
    """Every (label, exact value) is zero or within the range every generated kernel represents (float32's normal
    range, `codegen.exact.require_representable`); else a SpecError naming the algebra, the entry and the value."""
    for label, v in entries:
        try:
            require_representable(v, f"the {kind} {label} =")
        except UnrepresentableNumberError as e:
            raise SpecError(str(e), algebra=A.name, file=A.source) from None


def _render(A: AlgebraSpec, p: props.Properties, s: Scheme, plan, resolver: SchemeResolver, spec_dir: Path,
            out_dir: Path, spec_hash: str, tool_hash: str) -> BuiltAlgebra:
    f = formulas.build(A.T, s)
    spec_file = _rel(A.source, spec_dir.resolve().parent)
    naive_mults = len(nonzero_pairs(A.T))
    ctx = dict(version=__version__, spec_file=spec_file, name=A.name, title=A.title, dim=A.dim, basis=A.basis,
               rank=s.rank, naive_mults=naive_mults, scheme_provenance=s.provenance)
    cuda = cuda_emit.context(A.T, s, A.name)
    cpu = cpu_emit.context(A.T, s, A.name)
    files = {
        "ops.py": _env.get_template("ops.py.j2").render(**ctx, naive=f.naive["py"], scheme=f.scheme["py"]).encode(),
        f"{A.name}.cu": _env.get_template("kernels.cu.j2").render(**ctx, naive=f.naive["cu"], scheme=f.scheme["cu"],
                                                                  cuda=cuda).encode(),
        "kernels.json": (json.dumps(cuda["kernel_table"], indent=1, sort_keys=True) + "\n").encode(),
        f"{A.name}_cpu.cpp": _env.get_template("kernels_cpu.cpp.j2").render(**ctx, cpu=cpu).encode(),
        "cpu_kernels.json": (json.dumps(cpu["kernel_table"], indent=1, sort_keys=True) + "\n").encode(),
    }
    manifest = {
        "name": A.name, "title": A.title, "dim": A.dim, "basis": list(A.basis), "spec_file": spec_file,
        "tool_version": __version__, "tool_digest": tool_hash,
        "spec_dir": _rel(spec_dir, out_dir), "spec_digest": spec_hash,
        "structure": manifest_format.sparse(A.T),
        "properties": p.to_json(A.basis),
        "claims": dict(sorted(A.claims.items())),
        "scheme": {**s.to_json(), "naive_multiplications": naive_mults, "additions": f.additions,
                   "unusual_coefficients": s.unusual_coefficients()},
        "fold": plan.to_json(),
        "files": {name: digest.sha256_bytes(data) for name, data in sorted(files.items())},
    }
    manifest[manifest_format.DIGEST_FIELD] = manifest_format.content_digest(manifest)
    files[MANIFEST_NAME] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    check_generated(A, files)
    return BuiltAlgebra(A, p, s, files, manifest)


def check_generated(A: AlgebraSpec, files: dict[str, bytes]) -> None:
    """The post-build check: every generated Python file compiles and every JSON file parses.  A failure is a
    bug of the generator (user text reaches the files only validated or escaped), reported as such."""
    for name, data in files.items():
        try:
            if name.endswith(".py"):
                compile(data, f"{A.name}/{name}", "exec", dont_inherit=True)
            elif name.endswith(".json"):
                json.loads(data)
        except (SyntaxError, ValueError) as e:
            raise BuildError(f"algebra {A.name} (from {A.source}): the generated {name} is invalid ({e}); this is a "
                             f"bug in the code generator, please report it with the spec") from e


def resolve_out_dir(spec_dir: Path, out_dir: Path | None) -> Path:
    """The output folder: `out_dir`, or for the built-in specs their default folder (codegen.contract.locations).  Specs of
    your own are built where you say; a folder inside site-packages is refused (pip owns it)."""
    if out_dir is None:
        if not is_builtin_spec_dir(spec_dir):
            raise BuildError(f"no output folder given for the specs in {spec_dir}: pass --out FOLDER (out_dir=...), "
                             f"the folder to write their generated code into")
        out_dir = builtin_out_dir()
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise BuildError(f"output folder {out_dir} is a file, not a folder: pass --out with a folder path "
                         f"(it is created if missing)")
    sp = installed_location(out_dir)
    if sp is not None:
        raise BuildError(f"refusing to write generated code into {out_dir}, inside {sp} (installed packages "
                         f"live there); pass --out with a folder of your own")
    return out_dir


def installed_location(path: Path) -> Path | None:
    """The site-packages folder (or this package's own installed folder) that holds `path`, if any: nothing is
    ever written there."""
    paths = {sysconfig.get_paths().get(k) for k in ("purelib", "platlib")}
    try:
        paths.update(site.getsitepackages())
    except AttributeError:          # pragma: no cover - some embedded interpreters
        pass
    roots = [Path(p).resolve() for p in paths if p]
    if not is_checkout():
        roots.append(PACKAGE_ROOT.resolve())
    path = Path(path).resolve()
    return next((r for r in roots if path == r or r in path.parents), None)


def build(spec_dir: Path = DEFAULT_SPEC_DIR, out_dir: Path | None = None, only: list[str] | None = None,
          progress: Callable[[str], None] | None = None) -> list[BuiltAlgebra]:
    """Build every algebra in spec_dir (or those named in `only`) into out_dir; all or nothing.

    out_dir None: the built-in specs' default folder (see `resolve_out_dir`).  progress: called with a line as
    each algebra starts (once the build has run StageTimer.QUIET seconds) and after each stage that took
    StageTimer.SLOW seconds or more (elapsed time in brackets); nothing is
    reported as built here, since nothing is written until every algebra succeeded (the caller reports the
    returned algebras)."""
    start = time.perf_counter()
    spec_dir = Path(spec_dir).resolve()
    out_dir = resolve_out_dir(spec_dir, out_dir)
    algebras = discover(spec_dir)
    if only:
        unknown = [n for n in only if n not in algebras]
        if unknown:
            raise SpecError(f"no algebra named {unknown[0]!r} in {spec_dir} (have: {', '.join(algebras)})")
    chosen = [A for name, A in algebras.items() if not only or name in only]
    resolver = SchemeResolver(algebras, spec_dir)
    spec_hash, tool_hash = digest.spec_digest(spec_dir), digest.tool_digest()
    built = []
    for n, A in enumerate(chosen, 1):
        elapsed = time.perf_counter() - start
        if progress and elapsed >= StageTimer.QUIET:       # a quick build stays quiet
            progress(f"[{elapsed:7.1f}s] {A.name} (dim {A.dim}, {n} of {len(chosen)})")
        built.append(build_one(A, resolver, spec_dir, out_dir, spec_hash, tool_hash,
                               StageTimer(A.name, progress, start)))
    write(built, out_dir, full=not only, spec_hash=spec_hash, tool_hash=tool_hash, spec_dir=spec_dir)
    return built


def write(built: list[BuiltAlgebra], out_dir: Path, *, full: bool, spec_hash: str, tool_hash: str,
          spec_dir: Path) -> None:
    """Write the rendered folders and the index atomically (temp folder, then renames)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot create the output folder {out_dir}: {e}") from e
    index_path = out_dir / INDEX_NAME
    old_index = {}
    if index_path.is_file():
        try:
            old_index = json.loads(index_path.read_text()).get("algebras", {})
        except (ValueError, AttributeError, OSError):
            old_index = {}
    entries = {} if full else dict(old_index)
    tmp = out_dir / f".build-tmp-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as e:
        raise BuildError(f"cannot write {out_dir}: {e}") from e
    try:
        for b in built:
            folder = tmp / b.algebra.name
            folder.mkdir()
            for name, data in b.files.items():
                (folder / name).write_bytes(data)
            entries[b.algebra.name] = {"dim": b.algebra.dim, "rank": b.scheme.rank,
                                       "manifest": digest.sha256_bytes(b.files[MANIFEST_NAME])}
        index = {"tool_version": __version__, "tool_digest": tool_hash, "spec_dir": _rel(spec_dir, out_dir),
                 "spec_digest": spec_hash, "algebras": dict(sorted(entries.items()))}
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        for b in built:
            target = out_dir / b.algebra.name
            trash = tmp / f".old-{b.algebra.name}"
            if target.exists():
                target.rename(trash)
            (tmp / b.algebra.name).rename(target)
        if full:  # folders of algebras that no longer exist in the specs
            for name in old_index:
                if name not in entries and (out_dir / name).is_dir():
                    (out_dir / name).rename(tmp / f".old-{name}")
        (tmp / INDEX_NAME).replace(index_path)
    except OSError as e:
        raise BuildError(f"cannot write {out_dir}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check(spec_dir: Path = DEFAULT_SPEC_DIR, out_dir: Path | None = None) -> list[str]:
    """Problems that make out_dir incomplete or stale (empty list: complete and current).

    Rebuilds in memory and compares bytes, so it catches every difference the build would make.
    """
    spec_dir = Path(spec_dir).resolve()
    out_dir = resolve_out_dir(spec_dir, out_dir)
    problems = []
    algebras = discover(spec_dir)
    resolver = SchemeResolver(algebras, spec_dir)
    spec_hash, tool_hash = digest.spec_digest(spec_dir), digest.tool_digest()
    for A in algebras.values():
        b = build_one(A, resolver, spec_dir, out_dir, spec_hash, tool_hash)
        folder = out_dir / A.name
        if not folder.is_dir():
            problems.append(f"{A.name}: not built")
            continue
        for name, data in b.files.items():
            path = folder / name
            if not path.is_file():
                problems.append(f"{A.name}: {name} is missing")
            elif path.read_bytes() != data:
                problems.append(f"{A.name}: {name} is out of date")
    return problems
