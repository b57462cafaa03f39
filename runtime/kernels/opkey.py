"""Algebras as plain strings for custom ops: `key_of(algebra)` names an Algebra in `torch.library` ops (the CUDA
ops of runtime.kernels.cuda and the CPU kernels of runtime.kernels.cpu), `algebra_of(key)` finds it again.

Graphs, `opcheck` and exported programs see a string; two different algebras built under the same name (from
different folders) get different keys ("H", "H#2").
"""
from __future__ import annotations

import threading

import numpy as np

from ..registry import Algebra, load_algebra

__all__ = ["key_of", "algebra_of"]

_lock = threading.Lock()
_by_key: dict[str, Algebra] = {}


def key_of(algebra: Algebra | str) -> str:
    """The string that names `algebra` in the ops (its name, made unique if two differ under one name).

    Pass Algebra objects inside `torch.compile`d code (a name goes through `load_algebra`, which locks).
    """
    alg = algebra if isinstance(algebra, Algebra) else load_algebra(algebra)
    key = alg.cache.op_key
    if key is None:
        key = _register(alg)
    return key


def _same(a: Algebra, b: Algebra) -> bool:
    return (a.dim == b.dim and np.array_equal(a.structure, b.structure) and np.array_equal(a.scheme.U, b.scheme.U)
            and np.array_equal(a.scheme.V, b.scheme.V) and np.array_equal(a.scheme.W, b.scheme.W)
            and a.path == b.path)


def _register(alg: Algebra) -> str:
    with _lock:
        key, n = alg.name, 1
        while key in _by_key and _by_key[key] is not alg and not _same(_by_key[key], alg):
            n += 1
            key = f"{alg.name}#{n}"
        _by_key.setdefault(key, alg)
        alg.cache.op_key = key
        return key


def algebra_of(key: str) -> Algebra:
    """The Algebra registered under `key` (a plain name is loaded from the default generated folder)."""
    alg = _by_key.get(key)
    if alg is None:
        alg = load_algebra(key.split("#")[0])
        _by_key.setdefault(key, alg)
    return alg
