"""Result files of resumable scripts (examples.study, examples.pareto): one JSON file per finished unit of work,
written so that a file that exists is whole."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["save_json", "save_text"]


def save_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename (an interrupted write leaves no file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def save_json(path: Path, row: dict) -> None:
    """Write `row` as JSON to `path` via a temporary file and a rename (an interrupted write leaves no file)."""
    save_text(path, json.dumps(row, indent=1))
