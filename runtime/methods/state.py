"""Which method a call runs with: the global default, a per-thread forced method, and the per-call choice.

A per-call / per-layer `method=` wins over the global default (`set_default_method`, the `default_method(...)`
context manager; initially "auto"); `force_method(...)` overrides both in its thread (e.g. to run a whole model
on the block reference path).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from .table import check

__all__ = ["set_default_method", "get_default_method", "default_method", "force_method", "requested"]

_default = {"method": "auto"}
_local = threading.local()          # forced method (context manager), per thread


def set_default_method(method: str) -> None:
    """Method used by calls and layers that do not name one (method=None).  Initially "auto"."""
    _default["method"] = check(method, "set_default_method")


def get_default_method() -> str:
    return _default["method"]


@contextlib.contextmanager
def default_method(method: str) -> Iterator[None]:
    """Temporarily change the default method (layers with an explicit method= keep theirs)."""
    old = _default["method"]
    set_default_method(method)
    try:
        yield
    finally:
        _default["method"] = old


@contextlib.contextmanager
def force_method(method: str) -> Iterator[None]:
    """Use `method` for every algebra layer call in this thread, overriding per-layer choices."""
    check(method, "force_method")
    old = getattr(_local, "forced", None)
    _local.forced = method
    try:
        yield
    finally:
        _local.forced = old


def requested(method: str | None, who: str) -> str:
    """The method in force for a call (checked): the forced one, else the call's / layer's, else the default."""
    forced = getattr(_local, "forced", None)
    return check(forced if forced is not None else (method if method is not None else _default["method"]), who)
