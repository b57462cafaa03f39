"""Whole-model width matching for the experiment scripts (`--match-scope model`).

`--match-scope layers` (the default) sizes every algebra layer from the real layer it replaces
(`runtime.models.matched_width`: N = C/sqrt(d) elements at equal parameters, ...); layers that stay real
(embeddings, read-out) then differ in size from the real model's.  `--match-scope model` instead searches
the one width whose whole model has the parameters (or multiply-adds) closest to the real model's
(`runtime.models.match_model`), so those layers are paid for by narrower algebra layers.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from runtime import counting
from runtime.models import match_model

__all__ = ["SCOPES", "search_width"]

SCOPES = ("layers", "model")


def search_width(build: Callable[[int], nn.Module], real: nn.Module, match: str, guess: int, example_input=None,
                 method: str = "bilinear", multiple_of: int = 1, tolerance: float = 0.1) -> tuple[int, nn.Module]:
    """The width w (a multiple of `multiple_of`, searched around `guess`) whose `build(w)` has the
    parameters (match="params") or multiply-adds (match="macs", counted on `example_input` with `method`)
    closest to `real`'s.  Refuses when even the closest is off by more than `tolerance` (relative)."""
    if match not in ("params", "macs"):
        raise ValueError(f"--match-scope model needs --match params or macs, got {match!r}")
    q = max(1, int(multiple_of))
    candidates = [w for w in range(q, 4 * max(guess, q) + q, q)]
    width, model = match_model(build, real, match=match, example_input=example_input, method=method,
                               candidates=candidates)

    def measure(m: nn.Module) -> int:
        if match == "params":
            return counting.count_params(m)
        return counting.count(m, example_input).total_macs(method)

    got, want = measure(model), measure(real)
    if abs(got - want) > tolerance * want:
        raise ValueError(f"no width matches the real model's {match} within {tolerance:.0%}: the closest "
                         f"(width {width}) has {got:,} against {want:,} (layers that stay real, such as a large "
                         f"vocabulary's token table and read-out, can outgrow the whole real model); use "
                         f"--match-scope layers")
    return width, model
