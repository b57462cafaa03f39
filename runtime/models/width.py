"""Width matching: how many algebra elements replace C real channels at equal parameters or multiply-adds.

Against a real C -> C layer (C^2 parameters, C^2 MACs) an algebra layer with N elements per side has
d N^2 parameters and c N^2 MACs, c = real multiply-adds per element pair of the chosen method
(docs/design.md, "Width matching"):

    match="params":  N = C / sqrt(d)            match="macs":  N = C / sqrt(c)
    match="width":   N = C / d  (equal real width d*N = C)      match=None: N = C (one element per channel)

c is `macs_per_pair(algebra, method)`: naive k (non-zero structure constants), block d^2, fold d^2/m
(M_n(R): n^3), bilinear r (the scheme rank), complex d^2/m (where it applies).  `match_width` searches a model builder's width so that a
whole model's parameters or MACs come closest to a target; `match_model` takes the target from a real
baseline model.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

from torch import nn

from .. import counting, methods
from ..learned_algebra import describe, is_learned

__all__ = ["MATCH_MODES", "METHODS", "fold_blocks", "macs_per_pair", "matched_width", "matched_widths",
           "match_width", "match_model"]

MATCH_MODES = ("params", "macs", "width", None)
METHODS = methods.COUNTED


def fold_blocks(algebra) -> int:
    """m: the number of identical blocks the left-regular representation splits into (1 = no folding)."""
    A = describe(algebra)
    return 1 if is_learned(A) else A.fold.m


def macs_per_pair(algebra, method: str = "naive") -> float:
    """Real multiply-adds per (weight element, activation element) pair for `method`."""
    return methods.macs_per_pair(describe(algebra), method)


def matched_width(real_width: int, algebra, match: str | None = "params", method: str = "naive",
                  multiple_of: int = 1, min_width: int = 1) -> int:
    """Algebra elements that replace `real_width` real channels (rounded to a multiple of `multiple_of`)."""
    A = describe(algebra)
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
    width).  `measure` must grow with the width (parameters and MACs do): the search is a bisection, so
    only about log2(len(candidates)) + 2 models are built."""
    cands = sorted(set(int(c) for c in candidates))
    if not cands:
        raise ValueError("no candidate widths")
    cache: dict[int, tuple[float, nn.Module]] = {}

    def at(i: int) -> tuple[float, nn.Module]:
        if i not in cache:
            model = build(cands[i])
            cache[i] = (float(measure(model)), model)
        return cache[i]

    lo, hi = 0, len(cands) - 1                 # first index with measure >= target
    if at(hi)[0] < target:
        lo = hi
    else:
        while lo < hi:
            mid = (lo + hi) // 2
            if at(mid)[0] >= target:
                hi = mid
            else:
                lo = mid + 1
    best = min((i for i in (lo - 1, lo) if 0 <= i < len(cands)), key=lambda i: (abs(at(i)[0] - target), i))
    return cands[best], at(best)[1]


def match_model(build: Callable[[int], nn.Module], baseline: nn.Module, match: str = "params",
                example_input=None, method: str = "naive",
                candidates: Iterable[int] = range(1, 1025)) -> tuple[int, nn.Module]:
    """Pick the width w for which `build(w)` (an algebra model) has the parameters (match="params") or
    real multiply-adds (match="macs", counted on `example_input` with `method`) closest to `baseline`.

        w, model = match_model(lambda w: resnet("H", widths=(w, 2 * w, 4 * w, 8 * w)),
                               resnet("R", widths=(64, 128, 256, 512)), match="macs", example_input=x)
    """
    if match == "params":
        def measure(m):
            return counting.count(m).params
    elif match == "macs":
        if example_input is None:
            raise ValueError("match='macs' needs an example_input to count multiply-adds on")
        inputs = example_input if isinstance(example_input, tuple) else (example_input,)

        def measure(m):
            return counting.count(m, *inputs).total_macs(method)
    else:
        raise ValueError(f"match must be 'params' or 'macs', got {match!r}")
    return match_width(build, measure(baseline), measure, candidates)
