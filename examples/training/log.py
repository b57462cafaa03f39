"""The run's CSV log and progress bar (rank 0 only).

`CsvLog` appends one row per logged step with fixed columns and flushes it at once; on resume it first
drops the rows after the checkpoint's step (written by the interrupted run after its last checkpoint), so
the log reads as one uninterrupted run.  Floats are written in full (Python's shortest round-trip form).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

__all__ = ["CsvLog", "progress_bar"]


class CsvLog:
    def __init__(self, path: Path, columns: list[str], resume_step: int | None = None):
        self.path, self.columns = Path(path), list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames != self.columns:
                    raise ValueError(f"{self.path} has columns {reader.fieldnames}, this run writes "
                                     f"{self.columns}: move the old log away")
                rows = [r for r in reader if int(r["step"]) <= resume_step]
        self._file = open(self.path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._file.flush()

    def write(self, row: dict) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"CSV log has no columns {sorted(unknown)}")
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _Plain:
    """Stand-in for tqdm when it is missing or the bar is off: prints `write` lines only."""

    def __init__(self, *_, **__):
        pass

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def write(self, s: str) -> None:
        print(s, flush=True)

    def close(self) -> None:
        pass


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
    """A tqdm bar over training steps (the demo extra installs tqdm), or `_Plain` when off or missing."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                        file=sys.stderr, mininterval=1.0)
        except ImportError:
            pass
    return _Plain()
