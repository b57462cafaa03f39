"""A cache of tensors derived from a weight (its block expansion, its scheme combinations) for calls that
need no gradient, kept while the weight's values stay the same.

    value = cached_weight(weight, key, make)     # make() -> tensor derived from weight without autograd

A cached value is returned only when the weight still holds exactly the values it was made from: every call
compares the weight with a snapshot taken when the values were made, bit for bit (memcmp on the CPU: one read
of the compact weight and one of its copy).  Nothing cheaper is safe: `weight.data.mul_(2)` (EMA, weight
averaging, many training scripts) changes the values without bumping the weight's version counter or moving its
storage, and inference tensors (parameters made under `torch.inference_mode()`) have no version counter at all.  Comparing
costs two reads of the compact weight (d floats per element), far less than re-expanding it (d^2 floats per
element written and read again for the block path), and lets weights made under inference_mode be cached like
any other.  Entries die with their weight; a weight that is not weak-referenceable is never cached.
"""
from __future__ import annotations

import ctypes
import weakref
from typing import Callable

import torch

__all__ = ["cached_weight", "clear_weight_cache"]


class _Entry:
    """The values derived from one weight, and the snapshot of the weight they were made from."""

    __slots__ = ("ref", "snapshot", "values")

    def __init__(self, ref: weakref.ref):
        self.ref = ref
        self.snapshot: torch.Tensor | None = None
        self.values: dict = {}

    def holds(self, weight: torch.Tensor) -> bool:
        """Whether `weight` has exactly the values (and dtype, device, shape) the cached values were made from."""
        s = self.snapshot
        return (s is not None and s.dtype == weight.dtype and s.device == weight.device and s.shape == weight.shape
                and _same_bits(s, weight))


def _libc_memcmp():
    """The C library's memcmp through ctypes (None where it cannot be found)."""
    try:
        fn = ctypes.CDLL(None).memcmp
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return fn


_memcmp = _libc_memcmp()


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """a and b (same dtype, device, shape) hold the same bits.  Contiguous CPU tensors compare with memcmp (about
    2.5x faster than torch.equal on one CPU thread, which decides what the check costs at batch 1); bitwise is
    the right test here: the forms derived from identical bits are identical (NaNs included)."""
    if _memcmp is not None and a.device.type == "cpu" and a.is_contiguous() and b.is_contiguous():
        n = a.numel() * a.element_size()
        return n == 0 or _memcmp(a.data_ptr(), b.data_ptr(), n) == 0
    if a.is_floating_point():                       # the bits, not the values (-0.0 differs from 0.0, NaN is itself)
        a, b = a.view(_int_of(a)), b.view(_int_of(b))
    return bool(torch.equal(a, b))


def _int_of(t: torch.Tensor) -> torch.dtype:
    """The integer dtype of t's element size (bitwise comparison through torch.equal)."""
    return {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]


# id(weight) -> _Entry.  (A WeakKeyDictionary cannot hold tensors: it compares keys with ==.)
_weight_cache: dict[int, _Entry] = {}


def _forget(key: int, ref: weakref.ref) -> None:
    hit = _weight_cache.get(key)
    if hit is not None and hit.ref is ref:
        del _weight_cache[key]


def _entry(weight: torch.Tensor) -> _Entry | None:
    key = id(weight)
    hit = _weight_cache.get(key)
    if hit is not None and hit.ref() is weight:
        return hit
    try:
        ref = weakref.ref(weight, lambda r, key=key: _forget(key, r))
    except TypeError:           # not weak-referenceable
        return None
    hit = _weight_cache[key] = _Entry(ref)
    return hit


def cached_weight(weight: torch.Tensor, key, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """make() (a tensor derived from `weight` without autograd), cached while `weight` keeps its values.

    Not cached while compiling (the compiled graph owns its intermediates).  Values and snapshots are made as
    normal tensors even under torch.inference_mode(), so that they serve later calls outside it too.
    """
    if torch.compiler.is_compiling():
        return make()
    entry = _entry(weight)
    if entry is None:
        return make()
    if not entry.holds(weight):                       # (comparing needs no mode; making normal tensors does)
        entry.values.clear()
        with torch.inference_mode(False), torch.no_grad():
            entry.snapshot = weight.detach().clone()
    hit = entry.values.get(key)
    if hit is None:
        with torch.inference_mode(False), torch.no_grad():
            hit = entry.values[key] = make()
    return hit


def clear_weight_cache() -> None:
    _weight_cache.clear()
