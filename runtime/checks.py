"""Input checks shared by the runtime's public entry points, and the state an input is in: autocast, whether
autograd records a call, forward-mode tangents."""
from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD

__all__ = ["require_real_floating", "autocast_dtype", "needs_grad", "has_tangent"]


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


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for `device_type` ("cpu", "cuda"), or None when autocast is off there."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except (TypeError, RuntimeError):
        pass
    return None


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will record this call (grad mode on and some input requires grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def has_tangent(*tensors: torch.Tensor | None) -> bool:
    """Whether some input carries a forward-mode AD tangent (the generated kernels have no forward-mode formula:
    such calls take the torch paths, which propagate the tangent or refuse clearly, instead of dropping it)."""
    if fwAD._current_level < 0:             # no dual level is active: nothing can carry a tangent
        return False
    return any(t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors)
