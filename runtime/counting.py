"""Count parameters, real multiply-adds per method and weight bytes of any model, per layer.

    from runtime import counting
    report = counting.count(model, example_input)
    print(report.table(method="bilinear"))
    report.total_macs("block"), report.params, report.weight_bytes

Counts come from one forward pass with hooks (so convolution output sizes and sequence lengths are the
real ones); nothing is timed.  For an algebra layer with P output rows (batch x output positions) and
`pairs` = P * out * (in // groups) * prod(kernel) weight-element x activation-element products:

    naive     pairs * k      k = non-zero structure constants (algebra.naive_multiplications)
    block     pairs * d^2    one real GEMM / conv on the expanded (out*d) x (in*d) weight
    fold      pairs * d^2/m  m identical blocks of the left-regular representation (M_n(R): n^3); a fold
              through a basis change (Cl(2,0), the split-quaternions, ...) adds d^2 per activation
              element entering (F x) and leaving (G y) the products: the per-element change matrices
    bilinear  pairs * r      r = scheme rank; plus additions, reported separately:
              activation: (input elements per call) * a_V, post: (output elements) * a_W (the scheme's
              optimised addition counts), weight: weight elements * a_U (offline, cached);
              `map_macs`: the V and W maps when done as dense (r x d) matmuls (the torch path).
    complex   pairs * d^2/m  only for algebras whose (folded) blocks are complex q x q matrices (C, M2C):
              m q^2 complex products of 4 real multiplications, 4 m (d/2m)^2 = d^2/m (C: 4, M2C: 32); a
              fold through a basis change (Cl(3,0)) adds d^2 per activation element in and out, as fold.
              A layer over another algebra has no complex count: its table cell is "-", and
              total_macs("complex") over a model holding one raises a ValueError naming the layer.

A transposed convolution counts pairs per INPUT position (P_in * in * (out // groups) * prod(kernel)); a
recurrent layer or cell (any module with `linear_maps(rows)`) counts its input and hidden projections of
every layer and direction as linear layers over rows = time steps x batch: per direction and layer,
rows * G*hidden * (layer input + hidden) pairs (G = 1 RNN, 3 GRU, 4 LSTM); gates are not multiply-adds.

Real layers (nn.Linear, nn.ConvNd, the lift/read-out layers) count their GEMM MACs under every method;
modules with an `extra_macs(*input_shapes)` method (attention: QK^T and AV; called with the shapes of the
positional tensor inputs: query, key, value) add those.  Block-sparse layers
count only their stored elements.  Bias additions, norms and activations are not multiply-adds and are
not counted (torch's FlopCounterMode does not count them either).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import methods
from .methods.complex import change_macs as complex_change_macs
from .learned_algebra import describe, is_learned

__all__ = ["LayerCount", "CountReport", "count", "count_params", "METHODS", "algebra_layer_macs"]

METHODS = methods.COUNTED


@dataclass
class LayerCount:
    name: str
    kind: str
    algebra: str | None
    params: int
    nonzero_params: int
    weight_bytes: int
    macs: dict[str, int] = field(default_factory=dict)
    additions: dict[str, int] = field(default_factory=dict)
    map_macs: int = 0
    calls: int = 0

    def has(self, method: str) -> bool:
        """Whether the layer has a count for `method` (a method that does not apply to its algebra has none)."""
        return method in self.macs or "real" in self.macs or not self.macs

    def macs_for(self, method: str) -> int:
        if not self.has(method):
            raise ValueError(f"{self.name}: method {method!r} does not apply to algebra {self.algebra}")
        return int(self.macs.get(method, self.macs.get("real", 0)))


@dataclass
class CountReport:
    layers: list[LayerCount]

    @property
    def params(self) -> int:
        return sum(lc.params for lc in self.layers)

    @property
    def nonzero_params(self) -> int:
        return sum(lc.nonzero_params for lc in self.layers)

    @property
    def weight_bytes(self) -> int:
        return sum(lc.weight_bytes for lc in self.layers)

    def total_macs(self, method: str = "naive") -> int:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        return sum(lc.macs_for(method) for lc in self.layers)

    def total_additions(self, which: str | None = None) -> int:
        return sum(v for lc in self.layers for k, v in lc.additions.items() if which is None or k == which)

    def __getitem__(self, name: str) -> LayerCount:
        for lc in self.layers:
            if lc.name == name:
                return lc
        raise KeyError(name)

    def table(self, method: str | None = None) -> str:
        """A per-layer table: parameters, weight bytes and MACs (all methods, or only `method`)."""
        methods = METHODS if method is None else (method,)
        head = ["layer", "type", "params", "bytes"] + [f"MACs {m}" for m in methods] + ["adds (bilinear)"]
        rows = [head]
        for lc in self.layers:
            rows.append([lc.name, lc.kind + (f"[{lc.algebra}]" if lc.algebra else ""), f"{lc.params:,}",
                         f"{lc.weight_bytes:,}"] + [f"{lc.macs_for(m):,}" if lc.has(m) else "-" for m in methods]
                        + [f"{sum(lc.additions.values()):,}" if lc.additions else "-"])
        rows.append(["total", "", f"{self.params:,}", f"{self.weight_bytes:,}"]
                    + [f"{self.total_macs(m):,}" if all(lc.has(m) for lc in self.layers) else "-" for m in methods]
                    + [f"{self.total_additions():,}"])
        w = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
        lines.insert(1, "  ".join("-" * x for x in w))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def algebra_layer_macs(algebra, pairs: int) -> dict[str, int]:
    """MACs for `pairs` element products under every method that applies to the algebra."""
    A = describe(algebra)
    return {name: int(round(pairs * methods.macs_per_pair(A, name))) for name in METHODS if methods.applies(A, name)}


def _own_params(m: nn.Module) -> list[torch.Tensor]:
    return list(m.parameters(recurse=False)) + (
        [p for n, p in m.named_parameters() if n.startswith("parametrizations.")]
        if hasattr(m, "parametrizations") else [])


def _is_algebra_layer(m: nn.Module) -> bool:
    from .init import is_algebra_layer

    return is_algebra_layer(m)


def _shape(t: Any):
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


def _algebra_counts(A, pairs: int, in_seen: int, out_seen: int, weight_elems: int):
    """(macs, additions, map_macs) of algebra products: `pairs` element products, `in_seen` / `out_seen`
    activation elements entering / leaving the products (the scheme's V / W maps), `weight_elems` weights."""
    if is_learned(A):             # no scheme, no fold: naive d^3 and block d^2 per pair (module docstring)
        return algebra_layer_macs(A, pairs), {}, 0
    adds = A.scheme.additions.get("optimised", A.scheme.additions.get("naive", {}))
    additions = {"activation": in_seen * int(adds.get("activation", 0)),
                 "post": out_seen * int(adds.get("post", 0)),
                 "weight": weight_elems * int(adds.get("weight", 0))}
    macs = algebra_layer_macs(A, pairs)
    macs["fold"] += _change_macs(A, in_seen, out_seen)
    if "complex" in macs:
        macs["complex"] += complex_change_macs(A, in_seen, out_seen)
    return macs, additions, (in_seen + out_seen) * A.rank * A.dim


def _change_macs(A, in_seen: int, out_seen: int) -> int:
    """The change of basis of a fold through one: a dense d x d matrix per activation element in and out."""
    return 0 if A.fold.change_in is None or A.fold.m == 1 else (in_seen + out_seen) * A.dim * A.dim


def _layer_counts(m: nn.Module, inp, out) -> tuple[dict[str, int], dict[str, int], int]:
    """(macs by method or {'real': n}, additions, map_macs) for one call."""
    from .sparsity import BlockSparseAlgebraConv, BlockSparseAlgebraLinear

    x = inp[0] if inp else None
    xs, ys = _shape(x), _shape(out)
    if isinstance(m, (BlockSparseAlgebraLinear, BlockSparseAlgebraConv)):
        A = m.algebra
        d = A.dim
        if isinstance(m, BlockSparseAlgebraLinear):
            P = math.prod(ys[:-1])
        else:
            P = ys[0] * math.prod(ys[2:])
        return algebra_layer_macs(A, P * m.nnz), {}, 0
    maps = getattr(m, "linear_maps", None)
    if callable(maps) and getattr(m, "algebra", None) is not None and xs is not None:    # recurrent layers
        calls = maps(math.prod(xs[:-1]))
        return _algebra_counts(describe(m.algebra), sum(P * i * o for P, i, o in calls),
                               sum(P * i for P, i, _ in calls), sum(P * o for P, _, o in calls),
                               sum(i * o for _, i, o in calls))
    if _is_algebra_layer(m):
        A = describe(m.algebra)
        w = m.weight
        K = math.prod(w.shape[2:-1]) if w.dim() > 3 else 1
        groups = int(getattr(m, "groups", 1) or 1)
        if w.dim() == 3:                                    # linear: (..., in*d) -> (..., out*d)
            P = math.prod(ys[:-1])
            P_in = P
        else:                                               # conv: (N, C*d, *sp)
            batched = len(ys) == w.dim() - 1
            P = (ys[0] if batched else 1) * math.prod(ys[2:] if batched else ys[1:])
            P_in = (xs[0] if batched else 1) * math.prod(xs[2:] if batched else xs[1:])
        if getattr(m, "transposed", False):                 # weight (in, out // groups, *k, d): per input position
            in_e, out_g = w.shape[0], w.shape[1]
            return _algebra_counts(A, P_in * in_e * out_g * K, P_in * in_e, P * out_g * groups, w.numel() // A.dim)
        out_e, in_g = w.shape[0], w.shape[1]
        return _algebra_counts(A, P * out_e * in_g * K, P_in * in_g * groups, P * out_e, w.numel() // A.dim)
    if isinstance(m, nn.Linear):
        return {"real": math.prod(ys[:-1]) * m.in_features * m.out_features}, {}, 0
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        batched = len(ys) == m.weight.dim()
        P = (ys[0] if batched else 1) * math.prod(ys[2:] if batched else ys[1:])
        return {"real": P * m.weight[0].numel() * m.out_channels}, {}, 0
    # lift / read-out (real weights), anything else with a 2-D weight used as F.linear along a dim
    from .layers.lift import AlgebraLift, AlgebraReadout

    if isinstance(m, (AlgebraLift, AlgebraReadout)) and m.weight is not None:
        rows = math.prod(ys) // m.weight.shape[0]
        return {"real": rows * m.weight.numel()}, {}, 0
    extra = getattr(m, "extra_macs", None)
    if callable(extra) and xs is not None:                  # called with the shapes of the tensor inputs
        return {"real": int(extra(*(tuple(t.shape) for t in inp if isinstance(t, torch.Tensor))))}, {}, 0
    return {}, {}, 0


def count(model: nn.Module, *inputs, dtype: torch.dtype | None = None, **kwargs) -> CountReport:
    """Run `model(*inputs, **kwargs)` once (no grad) and count every layer; see the module docstring.

    dtype: count weight bytes as if parameters were stored in `dtype` (default: their own dtype).
    Without inputs only parameters and bytes are counted (MACs are zero).
    """
    records: dict[str, list] = {}
    hooks = []
    names = {}
    for name, m in model.named_modules():
        names[m] = name
        if "parametrizations" in name.split("."):
            continue

        def hook(mod, inp, out, name=name):
            macs, adds, mm = _layer_counts(mod, inp, out)
            if macs or adds:
                rec = records.setdefault(name, [None, {}, 0, 0])
                rec[1] = {k: rec[1].get(k, 0) + v for k, v in {**macs, **{f"+{a}": b for a, b in adds.items()}}.items()}
                rec[2] += mm
                rec[3] += 1

        hooks.append(m.register_forward_hook(hook))
    modes = {m: m.training for m in model.modules()}
    try:
        if inputs or kwargs:
            model.eval()                      # no running-statistics updates while counting
            with torch.no_grad():
                model(*inputs, **kwargs)
    finally:
        for h in hooks:
            h.remove()
        for m, was in modes.items():
            m.training = was

    layers = []
    for name, m in model.named_modules():
        if "parametrizations" in name.split("."):
            continue
        own = _own_params(m)
        rec = records.get(name)
        if not own and rec is None:
            continue
        params = sum(p.numel() for p in own)
        if _is_algebra_layer(m):
            with torch.no_grad():
                w = m.weight
            zero_elems = int((w == 0).all(-1).sum())
            nonzero = params - zero_elems * w.shape[-1]
        else:
            nonzero = params
        nbytes = sum(p.numel() * (torch.empty((), dtype=dtype).element_size() if dtype else p.element_size())
                     for p in own)
        macs, adds, mm, calls = {}, {}, 0, 0
        if rec is not None:
            for k, v in rec[1].items():
                (adds if k.startswith("+") else macs)[k.lstrip("+")] = v
            mm, calls = rec[2], rec[3]
        alg = getattr(m, "algebra", None)
        alg_name = getattr(alg, "name", alg) if isinstance(alg, str) or hasattr(alg, "name") else None
        cls = type(m)
        if cls.__name__.startswith("Parametrized") and len(cls.__bases__) == 1:
            cls = cls.__bases__[0]                  # a pruned layer: report its own class
        layers.append(LayerCount(name or cls.__name__, cls.__name__, alg_name, params, nonzero, nbytes,
                                 macs, adds, mm, calls))
    return CountReport(layers)
