"""Result files of resumable scripts (examples.study, examples.pareto): one JSON file per finished unit of work,
written so that a file that exists is whole; and the mean ± std cells of their tables."""
from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["save_json", "save_text", "plus_minus"]


def save_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename (an interrupted write leaves no file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def save_json(path: Path, row: dict) -> None:
    """Write `row` as JSON to `path` via a temporary file and a rename (an interrupted write leaves no file)."""
    save_text(path, json.dumps(row, indent=1))


def plus_minus(mean: float, std: float, fmt: str) -> str:
    """"mean ± std" with the format spec `fmt` (e.g. ".3f"); the mean alone where std is not finite (one seed)."""
    return f"{mean:{fmt}} ± {std:{fmt}}" if math.isfinite(std) else f"{mean:{fmt}}"
