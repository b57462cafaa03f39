"""A real text corpus that ships with every Python install: the CPython standard library's own source.

    corpus = stdlib_corpus(train_bytes=8_000_000, val_bytes=65_536)
    corpus.train, corpus.val        # uint8 byte streams as int64 tensors (N,): tokens are bytes, vocab 256
    corpus.sha256, corpus.python    # identity of the text used (it differs between Python versions)

The files are the sorted Lib/**/*.py under sysconfig's stdlib folder, without test folders (test, tests,
idle_test) and site-/dist-packages.  Each file goes to validation when the first byte of the SHA-256 of its
relative path (POSIX form) is below 13 (about 5 %), to training otherwise: a deterministic split by file,
so no validation text is a continuation of training text.  Each split is its files' UTF-8 bytes joined by
a newline, cut to the requested length.
"""
from __future__ import annotations

import hashlib
import platform
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["VOCAB", "Corpus", "stdlib_files", "stdlib_corpus"]

VOCAB = 256                                           # byte-level
EXCLUDED_FOLDERS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
VAL_HASH_BELOW = 13                                   # of 256: about 5 % of the files


@dataclass(frozen=True)
class Corpus:
    train: torch.Tensor          # (N_train,) int64 byte values
    val: torch.Tensor            # (N_val,) int64 byte values
    sha256: str                  # of the training bytes, a NUL, then the validation bytes
    python: str                  # the Python version whose standard library this is
    files: int                   # source files read


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The standard library's .py files (sorted, relative to `root`), without test folders and site-packages."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else Path(root)
    return sorted(p.relative_to(root) for p in root.rglob("*.py")
                  if not EXCLUDED_FOLDERS.intersection(p.relative_to(root).parts[:-1]))


def _is_val(rel: Path) -> bool:
    return hashlib.sha256(rel.as_posix().encode()).digest()[0] < VAL_HASH_BELOW


def _stream(root: Path, files: list[Path], limit: int) -> bytes:
    parts, n = [], 0
    for rel in files:
        if n >= limit:
            break
        data = (root / rel).read_bytes() + b"\n"
        parts.append(data)
        n += len(data)
    return b"".join(parts)[:limit]


def stdlib_corpus(train_bytes: int, val_bytes: int) -> Corpus:
    """The first `train_bytes` / `val_bytes` of the training / validation split (refuses a split that is
    shorter than asked)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root)
    if not files:
        raise FileNotFoundError(f"no standard library sources (*.py) under {root}")
    train = _stream(root, [f for f in files if not _is_val(f)], train_bytes)
    val = _stream(root, [f for f in files if _is_val(f)], val_bytes)
    if len(train) < train_bytes or len(val) < val_bytes:
        raise ValueError(f"the standard library under {root} holds {len(train):,} training / {len(val):,} "
                         f"validation bytes, fewer than the {train_bytes:,} / {val_bytes:,} asked for")
    digest = hashlib.sha256(train + b"\0" + val).hexdigest()

    def ids(b: bytes) -> torch.Tensor:
        return torch.frombuffer(bytearray(b), dtype=torch.uint8).long()

    return Corpus(ids(train), ids(val), digest, platform.python_version(), len(files))
