"""Find the algebras in a spec folder: import every module, register every module-level `AlgebraSpec`.

Modules are imported as submodules of a fresh synthetic package whose path is the spec folder, so
specs can import each other relatively (`from .scalars import C`) from any folder, and repeated builds
in one process see edited files.  Names starting with an underscore are private and not registered.
"""
from __future__ import annotations

import importlib
import itertools
import sys
import traceback
import types
from pathlib import Path

from .errors import SpecError
from .algebra import AlgebraSpec

_counter = itertools.count()


def spec_modules(spec_dir: Path) -> list[Path]:
    return sorted(p for p in Path(spec_dir).glob("*.py") if p.name != "__init__.py")


def _import_error(path: Path, exc: BaseException) -> SpecError:
    if isinstance(exc, SpecError):
        if exc.file is None:
            exc.file = str(path)
        return exc
    if isinstance(exc, SyntaxError):
        return SpecError(f"line {exc.lineno}: syntax error: {exc.msg}", file=str(path))
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    where = f"line {frames[-1].lineno}: " if frames else ""
    if isinstance(exc, SystemExit):
        return SpecError(f"{where}the spec module calls sys.exit({exc.code!r}) while it is imported; a spec file only "
                         f"defines algebras: remove the call (or guard it with `if __name__ == '__main__':`)",
                         file=str(path))
    return SpecError(f"{where}{type(exc).__name__}: {exc}", file=str(path))


def discover(spec_dir: Path) -> dict[str, AlgebraSpec]:
    """name -> AlgebraSpec for every public module-level algebra in spec_dir (sorted by name)."""
    spec_dir = Path(spec_dir).resolve()
    if not spec_dir.is_dir():
        raise SpecError(f"spec folder {spec_dir} does not exist")
    pkg_name = f"_algebranets_specs_{next(_counter)}"
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = [str(spec_dir)]
    pkg.__package__ = pkg_name
    sys.modules[pkg_name] = pkg
    found: dict[str, AlgebraSpec] = {}
    where: dict[str, str] = {}                  # algebra name -> "variable V in file F" that defined it first
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True              # never write __pycache__ into a spec folder (it may be installed)
    try:
        for path in spec_modules(spec_dir):
            try:
                module = importlib.import_module(f"{pkg_name}.{path.stem}")
            except BaseException as exc:  # noqa: BLE001 - every failure becomes one clear SpecError
                if isinstance(exc, KeyboardInterrupt):
                    raise
                raise _import_error(path, exc) from None
            for var, value in vars(module).items():
                if var.startswith("_") or not isinstance(value, AlgebraSpec):
                    continue
                if value.source is None:
                    value.source = str(path)
                here = f"variable {var} in {path}"
                other = found.get(value.name)
                if other is not None and other != value:
                    raise SpecError(f"two different algebras are named {value.name!r}: {where[value.name]} and "
                                    f"{here}; give each its own name", algebra=value.name, file=str(path))
                found.setdefault(value.name, value)
                where.setdefault(value.name, here)
    finally:
        sys.dont_write_bytecode = dont_write
        for mod in [m for m in sys.modules if m == pkg_name or m.startswith(pkg_name + ".")]:
            del sys.modules[mod]
    return dict(sorted(found.items()))
