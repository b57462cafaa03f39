"""Content digests shared by the build and the runtime's staleness check (standard library only).

The tool digest covers exactly what determines the generated files: the build driver, the spec API, the exact
core, the schemes, the emitters and templates (and the package version), and the scheme library (the built-in
specs' stored schemes, which `codegen.schemes.known` offers to every algebra isomorphic to theirs).  The scheme search (`codegen/search/`) and the CLI are
left out: editing them cannot change a build, so it must not make builds stale.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

CODEGEN_DIR = Path(__file__).resolve().parent.parent
OUTPUT_DETERMINING = ("contract", "spec", "exact", "schemes", "emit")
# The scheme library: stored schemes of built-in algebras that `codegen.schemes.known` offers by tensor.
SCHEME_LIBRARY_DIR = CODEGEN_DIR.parent / "algebra_spec" / "schemes"
SCHEME_LIBRARY = ("M3R", "M4R", "O")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted({p for pat in patterns for p in root.rglob(pat)
                   if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".tmp")})


def files_digest(files: list[Path], base: Path) -> str:
    """Digest of files by their path relative to base and their content, order-independent."""
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(p.relative_to(base).as_posix().encode() + b"\0")
        h.update(sha256_bytes(p.read_bytes()).encode() + b"\n")
    return h.hexdigest()


def tool_digest() -> str:
    """Digest of the parts of the generator that determine its output (sources and templates)."""
    files = [CODEGEN_DIR / "__init__.py", CODEGEN_DIR / "build.py"]
    for sub in OUTPUT_DETERMINING:
        files += _files(CODEGEN_DIR / sub, ("*.py", "*.j2"))
    h = hashlib.sha256(files_digest(files, CODEGEN_DIR).encode())
    library = [p for p in (SCHEME_LIBRARY_DIR / f"{name}.json" for name in SCHEME_LIBRARY) if p.is_file()]
    h.update(files_digest(library, SCHEME_LIBRARY_DIR).encode())
    return h.hexdigest()


def spec_digest(spec_dir: Path) -> str:
    """Digest of a spec folder: its Python modules and stored scheme files."""
    spec_dir = Path(spec_dir)
    return files_digest(_files(spec_dir, ("*.py", "*.json")), spec_dir)
