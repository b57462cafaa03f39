"""Reusable CPU scratch buffers for the layers' internal temporaries.

On CPU every large fresh tensor costs page faults (glibc returns big blocks to the OS, so a 32 MB
temporary is faulted in again on every call, which can cost as much as the memory pass that fills it).
The fold and bilinear paths therefore take their internal temporaries (activation combinations, folded
activations, the r GEMM outputs, gradient combinations) from this pool and give them back when done,
like a GPU caching allocator.  Tensors returned to the caller are never pooled.

- CUDA tensors are not pooled (the CUDA caching allocator already does this), nor is anything while
  torch.compile traces (the compiled graph plans its own memory).
- Free buffers are kept up to `limit` bytes in all (default 1 GiB; `set_workspace_limit`);
  `empty_workspace()` frees them.
"""
from __future__ import annotations

import threading

import torch

__all__ = ["take", "give", "pooled", "empty_workspace", "set_workspace_limit", "workspace_bytes"]

_lock = threading.Lock()
_free: dict[tuple, list[torch.Tensor]] = {}
_state = {"limit": 1 << 30, "bytes": 0}


def pooled(device: torch.device) -> bool:
    """Whether temporaries on `device` come from the pool now."""
    return device.type == "cpu" and not torch.compiler.is_compiling()


def take(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 1-D tensor of `numel` elements (uninitialised): from the pool when possible."""
    if not pooled(device):
        return torch.empty(numel, dtype=dtype, device=device)
    key = (dtype, device)
    with _lock:
        bufs = _free.get(key)
        if bufs:
            best = None
            for i, b in enumerate(bufs):
                n = b.numel()
                if numel <= n <= 2 * numel + 4096 and (best is None or n < bufs[best].numel()):
                    best = i
            if best is not None:
                b = bufs.pop(best)
                _state["bytes"] -= b.numel() * b.element_size()
                return b[:numel]
    return torch.empty(numel, dtype=dtype, device=device)


def give(t: torch.Tensor | None) -> None:
    """Return a tensor obtained from `take` (or a view of it) to the pool."""
    if t is None or not pooled(t.device):
        return
    base = t if t._base is None else t._base
    nbytes = base.numel() * base.element_size()
    if nbytes > _state["limit"]:
        return
    key = (base.dtype, base.device)
    with _lock:
        bufs = _free.setdefault(key, [])
        if any(b is base for b in bufs):
            return
        bufs.append(base)
        _state["bytes"] += nbytes
        while _state["bytes"] > _state["limit"] and bufs:
            # drop the oldest buffers first
            old = bufs.pop(0)
            _state["bytes"] -= old.numel() * old.element_size()


def empty_workspace() -> None:
    """Free every pooled buffer."""
    with _lock:
        _free.clear()
        _state["bytes"] = 0


def set_workspace_limit(nbytes: int) -> None:
    """Most bytes of free scratch buffers kept between calls (0 disables pooling)."""
    with _lock:
        _state["limit"] = int(nbytes)
    if nbytes <= 0:
        empty_workspace()


def workspace_bytes() -> int:
    """Bytes held by free pooled buffers."""
    return _state["bytes"]
