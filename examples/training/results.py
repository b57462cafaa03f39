"""Result files of resumable scripts (examples.study, examples.pareto): one JSON file per finished unit of work,
written so that a file that exists is whole."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["save_json"]


def save_json(path: Path, row: dict) -> None:
    """Write `row` as JSON to `path` via a temporary file and a rename (an interrupted write leaves no file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(row, indent=1))
    tmp.replace(path)
