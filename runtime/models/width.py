"""Width matching: how many algebra elements replace C real channels at equal parameters or multiply-adds.

Against a real C -> C layer (C^2 parameters, C^2 MACs) an algebra layer with N elements per side has
d N^2 parameters and c N^2 MACs, c = real multiply-adds per element pair of the chosen method
(REFERENCE.md section 7):

    match="params":  N = C / sqrt(d)            match="macs":  N = C / sqrt(c)
    match="width":   N = C / d  (equal real width d*N = C)      match=None: N = C (one element per channel)

c is `macs_per_pair(algebra, method)`: naive k (non-zero structure constants), block d^2, fold d^2/m
(M_n(R): n^3), bilinear r (the scheme rank).  `match_width` searches a model builder's width so that a
whole model's parameters or MACs come closest to a baseline's.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

from torch import nn

from ..registry import load_algebra

__all__ = ["MATCH_MODES", "METHODS", "fold_blocks", "macs_per_pair", "matched_width", "matched_widths",
           "match_width"]

MATCH_MODES = ("params", "macs", "width", None)
METHODS = ("naive", "block", "fold", "bilinear")


def fold_blocks(algebra) -> int:
    """m: the number of identical blocks the left-regular representation splits into (1 = no folding)."""
    A = load_algebra(algebra)
    key = "_toolkit_fold_m"
    if key not in A._cache:
        try:
            from .._fold import fold_plan
            A._cache[key] = int(fold_plan(A.structure).m)
        except ImportError:                       # pragma: no cover - fold module missing
            A._cache[key] = 1
    return A._cache[key]


def macs_per_pair(algebra, method: str = "naive") -> float:
    """Real multiply-adds per (weight element, activation element) pair for `method`."""
    A = load_algebra(algebra)
    d = A.dim
    if method == "naive":
        return float(A.naive_multiplications)
    if method == "block":
        return float(d * d)
    if method == "fold":
        return d * d / fold_blocks(A)
    if method == "bilinear":
        return float(A.rank)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def matched_width(real_width: int, algebra, match: str | None = "params", method: str = "naive",
                  multiple_of: int = 1, min_width: int = 1) -> int:
    """Algebra elements that replace `real_width` real channels (rounded to a multiple of `multiple_of`)."""
    A = load_algebra(algebra)
    if match == "params":
        n = real_width / math.sqrt(A.dim)
    elif match == "macs":
        n = real_width / math.sqrt(macs_per_pair(A, method))
    elif match == "width":
        n = real_width / A.dim
    elif match is None:
        n = float(real_width)
    else:
        raise ValueError(f"match must be one of {MATCH_MODES}, got {match!r}")
    q = max(1, int(multiple_of))
    return max(int(min_width), q * max(1, int(math.floor(n / q + 0.5))))


def matched_widths(real_widths: Iterable[int], algebra, match: str | None = "params", method: str = "naive",
                   multiple_of: int = 1) -> tuple[int, ...]:
    return tuple(matched_width(w, algebra, match, method, multiple_of) for w in real_widths)


def match_width(build: Callable[[int], nn.Module], target: float, measure: Callable[[nn.Module], float],
                candidates: Iterable[int]) -> tuple[int, nn.Module]:
    """The candidate width whose model `build(w)` has `measure` closest to `target` (ties: the smaller
    width).  E.g. measure = lambda m: counting.count(m, x).params, target = the real baseline's."""
    best = None
    for w in sorted(set(int(c) for c in candidates)):
        model = build(w)
        err = abs(measure(model) - target)
        if best is None or err < best[0]:
            best = (err, w, model)
    if best is None:
        raise ValueError("no candidate widths")
    return best[1], best[2]
