"""Reusable CPU scratch memory for the layers' internal temporaries.

On CPU every large fresh tensor costs page faults (glibc returns big blocks to the OS, so a 32 MB
temporary is faulted in again on every call, which can cost as much as the memory pass that fills it).
The fold and bilinear paths therefore take their internal temporaries (activation combinations, folded
activations, the r GEMM outputs, gradient combinations) from this pool and give them back when done,
like a GPU caching allocator.  Tensors returned to the caller are never pooled.

The pool keeps *storages*, not tensors, which makes it safe by construction:

- `take` wraps a free storage in a new 1-D tensor of exactly the size asked, made in the current mode, so a
  buffer last used under `torch.inference_mode()` never reaches code outside it as an inference tensor (and
  the reverse), and its shape never depends on the view it was given back as.
- Every storage handed out is recorded (weakly) until it is given back; `give` accepts only a storage that is
  on loan now, once.  Giving back a tensor that did not come from `take`, or twice, does nothing, and a loan
  whose tensors die without `give` just frees its memory.
- CUDA tensors are not pooled (the CUDA caching allocator already does this), nor is anything while
  torch.compile traces (the compiled graph plans its own memory).

Free storages are kept up to `limit` bytes in all (default 1 GiB; `set_workspace_limit`); `empty_workspace()`
frees them.
"""
from __future__ import annotations

import threading

import torch
from torch.multiprocessing.reductions import StorageWeakRef

__all__ = ["take", "give", "pooled", "empty_workspace", "set_workspace_limit", "workspace_bytes"]

_lock = threading.Lock()
_free: dict[torch.device, list[torch.UntypedStorage]] = {}     # oldest first
_lent: dict[int, StorageWeakRef] = {}                          # StorageImpl address -> weak ref, while on loan
_state = {"limit": 1 << 30, "bytes": 0}


def pooled(device: torch.device) -> bool:
    """Whether temporaries on `device` come from the pool now."""
    return device.type == "cpu" and not torch.compiler.is_compiling()


def _pick(bufs: list[torch.UntypedStorage], nbytes: int) -> int | None:
    """Index of the smallest free storage that fits `nbytes` without wasting more than about half of it."""
    best = None
    for i, s in enumerate(bufs):
        n = s.nbytes()
        if nbytes <= n <= 2 * nbytes + 16384 and (best is None or n < bufs[best].nbytes()):
            best = i
    return best


def take(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A fresh 1-D tensor of exactly `numel` elements (uninitialised), backed by pooled memory when possible."""
    if numel <= 0 or not pooled(device):
        return torch.empty(numel, dtype=dtype, device=device)
    nbytes = numel * dtype.itemsize
    storage = None
    with _lock:
        bufs = _free.get(device)
        i = _pick(bufs, nbytes) if bufs else None
        if i is not None:
            storage = bufs.pop(i)
            _state["bytes"] -= storage.nbytes()
    if storage is None:
        out = torch.empty(numel, dtype=dtype, device=device)
        storage = out.untyped_storage()
    else:
        out = torch.empty(0, dtype=dtype, device=device).set_(storage, 0, (numel,))
    with _lock:
        if len(_lent) > 4096:               # forget loans whose tensors died without being given back
            for key in [k for k, ref in _lent.items() if ref.expired()]:
                del _lent[key]
        _lent[storage._cdata] = StorageWeakRef(storage)
    return out


def give(t: torch.Tensor | None) -> None:
    """Hand back the memory of a tensor from `take` (or of a view of it); the caller must not use it again."""
    if t is None or not pooled(t.device):
        return
    storage = t.untyped_storage()
    nbytes = storage.nbytes()
    with _lock:
        ref = _lent.pop(storage._cdata, None)
        if ref is None or ref.expired() or ref.cdata != storage._cdata:
            return                          # not on loan: not from the pool, or given back already
        if nbytes > _state["limit"]:
            return
        bufs = _free.setdefault(t.device, [])
        bufs.append(storage)
        _state["bytes"] += nbytes
        while _state["bytes"] > _state["limit"] and bufs:
            old = bufs.pop(0)               # drop the oldest first
            _state["bytes"] -= old.nbytes()


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
