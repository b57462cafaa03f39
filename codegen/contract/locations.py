"""Where built algebras live by default; shared by `python -m codegen` and the runtime (standard library only).

The built-in algebras (the specs shipped in `algebra_spec/`) are built into:

- a source checkout (the project folder, with `pyproject.toml` and `generated/`; editable installs too):
  `<checkout>/generated`, filled by `make build` / `python -m codegen build`;
- an installed package (a wheel in site-packages): the user cache, `$ALGEBRANETS_CACHE` or
  `$XDG_CACHE_HOME/algebranets` or `~/.cache/algebranets`, in a folder named after the package version and the
  digest of the generator and the built-in specs (two installed versions never share one).  The runtime builds
  each built-in algebra there on first use.  Nothing is ever written into site-packages.

`$ALGEBRANETS_GENERATED` names the folder the runtime loads from when set (e.g. a folder of your own algebras).
User specs are built where the user says (`--out`): a spec folder other than the built-in one has no default
output folder.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .. import __version__

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_SPEC_DIR = PACKAGE_ROOT / "algebra_spec"
GENERATED_ENV = "ALGEBRANETS_GENERATED"
CACHE_ENV = "ALGEBRANETS_CACHE"

_digest: list[str] = []


def is_checkout() -> bool:
    """Running from a source checkout (its generated/ folder is the built-ins' home), not an installed wheel."""
    return (PACKAGE_ROOT / "pyproject.toml").is_file() and (PACKAGE_ROOT / "generated").is_dir()


def cache_root() -> Path:
    """The user cache folder of AlgebraNets."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "algebranets"


def _builtin_digest() -> str:
    if not _digest:
        from . import digest

        h = hashlib.sha256((digest.tool_digest() + digest.spec_digest(BUILTIN_SPEC_DIR)).encode())
        _digest.append(h.hexdigest()[:16])
    return _digest[0]


def builtin_out_dir() -> Path:
    """Where the built-in algebras are built: <checkout>/generated, or the user cache when installed."""
    if is_checkout():
        return PACKAGE_ROOT / "generated"
    return cache_root() / f"generated-{__version__}-{_builtin_digest()}"


def is_builtin_cache(folder: Path) -> bool:
    """Whether `folder` is the user-cache folder of the built-in algebras (which the runtime fills itself)."""
    return not is_checkout() and Path(folder).resolve() == builtin_out_dir().resolve()


def default_generated_dir() -> Path:
    """The folder the runtime loads algebras from: $ALGEBRANETS_GENERATED, else the built-ins' folder."""
    given = os.environ.get(GENERATED_ENV)
    return Path(given).expanduser() if given else builtin_out_dir()


def is_builtin_spec_dir(spec_dir: Path) -> bool:
    return Path(spec_dir).resolve() == BUILTIN_SPEC_DIR.resolve()


def rebuild_command(spec_dir: Path | None, out_dir: Path) -> str:
    """The command that rebuilds `out_dir` from `spec_dir` (the plain command for the built-ins' folder)."""
    if (spec_dir is None or is_builtin_spec_dir(spec_dir)) and Path(out_dir).resolve() == builtin_out_dir().resolve():
        return "python -m codegen build"
    spec = "<your spec folder>" if spec_dir is None else _quote(spec_dir)
    return f"python -m codegen build --spec-dir {spec} --out {_quote(out_dir)}"


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
