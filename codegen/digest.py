"""Content digests shared by the build and the runtime's staleness check (standard library only)."""
from __future__ import annotations

import hashlib
from pathlib import Path

CODEGEN_DIR = Path(__file__).resolve().parent


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_digest(root: Path, patterns: tuple[str, ...]) -> str:
    """Digest of the files under root matching patterns, by relative path and content, order-independent."""
    root = Path(root)
    h = hashlib.sha256()
    files = sorted({p for pat in patterns for p in root.rglob(pat)
                    if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".tmp")})
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(sha256_bytes(p.read_bytes()).encode() + b"\n")
    return h.hexdigest()


def tool_digest() -> str:
    """Digest of the generator itself (its Python sources and templates)."""
    return tree_digest(CODEGEN_DIR, ("*.py", "*.j2"))


def spec_digest(spec_dir: Path) -> str:
    """Digest of a spec folder: its Python modules and stored scheme files."""
    return tree_digest(Path(spec_dir), ("*.py", "*.json"))
