"""The methods a layer can compute with, one row each: what `auto`, counting and width matching read.

| method   | real MACs per element pair | how |
|----------|----------------------------|-----|
| block    | d^2    | the reference: one GEMM / conv on the expanded real weight L(w) |
| fold     | d^2/m  | m identical blocks of L(w) folded into the batch: one GEMM / conv |
| bilinear | r      | the verified rank-r scheme: r real GEMMs on weight and activation combinations |
| complex  | 4 m q^2 = d^2/m | torch's complex GEMM / conv on complex views (blocks that are complex matrices) |
| kernel   | k (naive; or r) | the generated CPU kernel / CUDA gemv (runtime.kernels), small batches at inference |
| auto     | -      | the cheapest torch path by the cost model; the kernel where runtime.kernels.choice says |

A row carries its MACs per element pair (None where it has no count of its own: the kernel runs the naive
products, counted as "naive"), its cost formula for `auto` (None: not a candidate), its linear and conv
implementations (None: the kernel, which runtime.kernels.choice dispatches, and auto), and which algebras it
applies to (None: all; complex: runtime.methods.complex.applies; elsewhere it raises a ValueError naming the
algebra, and auto, counting and width matching leave it out).  Adding a method is adding a row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..learned_algebra import is_learned
from ..registry import Algebra
from . import bilinear, block, complex
from .cost import LayerShape, bilinear_cost, block_cost, complex_cost, fold_cost

__all__ = ["Method", "TABLE", "METHODS", "AUTO_CANDIDATES", "COUNTED", "check", "get", "macs_per_pair",
           "method_costs", "choose_method", "choose_cached", "applies", "LayerShape"]


@dataclass(frozen=True)
class Method:
    """One way to compute an algebra layer.

    macs: real MACs per (weight element, activation element) pair, or None (no count of its own).
    cost: auto's modelled cost of one forward pass (MAC-equivalents), or None (not an auto candidate).
    linear: (weight (out, in, d), bias (out, d) | None, algebra) -> step (N, in*d) -> (N, out*d), the weight-side
        work done once; conv: (x (N, C_in*d, *S), weight, bias, algebra, ConvGeometry) -> (N, C_out*d, *S').
    applies: algebra -> whether the method can run layers over it, or None (every algebra).
    """

    name: str
    summary: str
    macs: Callable[[Algebra], float] | None = None
    cost: Callable[[Algebra, LayerShape], float] | None = None
    linear: Callable | None = None
    conv: Callable | None = None
    applies: Callable[[Algebra], bool] | None = None


TABLE: tuple[Method, ...] = (
    Method("auto", "the cheapest torch path by the cost model; the generated kernels where they win"),
    Method("block", "one GEMM / conv on the expanded (out*d) x (in*d) real weight (the reference)",
           macs=lambda A: float(A.dim * A.dim), cost=block_cost, linear=block.block_linear, conv=block.block_conv),
    Method("fold", "m identical blocks of the left-regular representation folded into the batch",
           macs=lambda A: A.dim * A.dim / A.fold.m, cost=fold_cost, linear=block.fold_linear, conv=block.fold_conv),
    Method("bilinear", "r real GEMMs on the scheme's weight and activation combinations",
           macs=lambda A: float(A.rank), cost=bilinear_cost, linear=bilinear.bilinear_linear,
           conv=bilinear.bilinear_conv),
    Method("complex", "torch's complex GEMM / conv on complex views, where the (folded) blocks are complex matrices",
           macs=complex.complex_macs, cost=complex_cost, linear=complex.complex_linear, conv=complex.complex_conv,
           applies=complex.applies),
    Method("kernel", "the generated CPU kernel / CUDA gemv over the compact weight (small batches, inference)"),
)

_BY_NAME = {m.name: m for m in TABLE}
#: every method name a layer accepts
METHODS: tuple[str, ...] = tuple(_BY_NAME)
#: the torch paths `auto` chooses among, in tie-break order
AUTO_CANDIDATES: tuple[str, ...] = tuple(m.name for m in TABLE if m.cost is not None)
#: what runtime.counting reports: the naive product count (what the kernel runs) and every method with a count
COUNTED: tuple[str, ...] = ("naive",) + tuple(m.name for m in TABLE if m.macs is not None)


def check(method: str, who: str = "method") -> str:
    """`method` if it names a method, else a ValueError naming the caller and the choices."""
    if method not in _BY_NAME:
        raise ValueError(f"{who}: unknown method {method!r}; choose one of {', '.join(map(repr, METHODS))}")
    return method


def get(name: str) -> Method:
    return _BY_NAME[check(name)]


def applies(A: Algebra, name: str) -> bool:
    """Whether method `name` (or "naive") can compute layers over A."""
    if name == "naive":
        return True
    if is_learned(A):                       # a learned structure runs the block path (runtime.methods.learned_fn)
        return name == "block"
    test = get(name).applies
    return test is None or test(A)


def macs_per_pair(A: Algebra, name: str) -> float:
    """Real multiply-adds per element pair: "naive" (k, the non-zero structure constants) or a counted method
    (a ValueError naming the algebra where the method does not apply, see `applies`)."""
    if name == "naive":
        return float(A.naive_multiplications)
    if name not in COUNTED:
        raise ValueError(f"method must be one of {COUNTED}, got {name!r}")
    return _BY_NAME[name].macs(A)


def method_costs(A: Algebra, **shape) -> dict[str, float]:
    """Modelled cost (MAC-equivalents) of one forward pass for each torch path that applies to A; `shape` as in
    LayerShape."""
    s = LayerShape(**shape)
    return {name: _BY_NAME[name].cost(A, s) for name in AUTO_CANDIDATES if applies(A, name)}


def choose_method(A: Algebra, **shape) -> str:
    """The method `auto` picks for these sizes (see `method_costs`); ties go to block, then fold."""
    costs = method_costs(A, **shape)
    return min(costs, key=lambda k: costs[k])


def choose_cached(A: Algebra, **shape) -> str:
    """`choose_method`, remembered per algebra and shape (the algebra's cache)."""
    key = tuple(sorted(shape.items()))
    memo = A.cache.methods
    hit = memo.get(key)
    if hit is None:
        hit = choose_method(A, **shape)
        if len(memo) > 4096:
            memo.clear()
        memo[key] = hit
    return hit
