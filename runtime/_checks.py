"""Input checks shared by the runtime's public entry points."""
from __future__ import annotations

import torch


def require_real_floating(t, who: str, label: str = "input") -> None:
    """Refuse anything but a real floating-point tensor.  Integer and bool tensors would truncate fractional
    structure constants and averages; complex tensors are not coordinates over the reals."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{who}: {label} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_floating_point():
        return
    hint = ("pass its real coordinates instead, e.g. torch.view_as_real(z).flatten(-2) for complex z"
            if t.is_complex() else f"cast it first, e.g. {label}.float()")
    raise TypeError(f"{who}: {label} must be a real floating-point tensor, got {t.dtype}; {hint}")
