"""Checkpoints: one file per run (`<out>/checkpoint.pt`), written atomically by rank 0.

A checkpoint holds the step, the model (its `state_dict`, pruning masks included), the optimizer, the
pruner's counter and the run's identity (the options that shape the model and data); `load` refuses a
checkpoint whose identity differs from the run asking for it, naming the differences.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["save", "load", "check_identity"]


def save(path: Path, state: dict) -> None:
    """Write `state` to `path` via a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict:
    """A checkpoint written by `save`, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def check_identity(saved: dict, current: dict, path: Path) -> None:
    """Refuse to resume a run whose model- or data-shaping options differ from the checkpoint's."""
    diff = [f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}"
            for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diff:
        raise ValueError(f"cannot resume from {path}: the run differs from the checkpoint's ("
                         + "; ".join(diff) + ")")
