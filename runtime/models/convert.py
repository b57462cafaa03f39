"""Swap a real model's Linear / Conv layers for algebra ones.

    algebra_model = convert(real_model, "H", match="params")

Every real channel width C becomes N(C) algebra elements (`matched_width`: match="params" -> C/sqrt(d),
"macs" -> C/sqrt(c_method), "width" -> C/d, None -> C), deterministically per width, so residual adds and
concatenations that agree in the real model agree after conversion.  In module registration order
(or the order of a forward pass when ``example_input`` is given):

- the first Linear/Conv keeps its real input: it becomes ``Sequential(AlgebraLift(in, mode="embed"),
  AlgebraLinear/AlgebraConv(in, N(out)))``;
- the last Linear/Conv keeps its real output: ``AlgebraReadout(N(in), out)`` for a Linear, a real conv
  over the N(in)*d components for a Conv;
- every other Linear / Conv1d/2d/3d becomes the algebra layer with N(in) -> N(out) (same kernel, stride,
  padding, dilation; groups must be 1 or depthwise);
- BatchNorm1d/2d/3d(C) -> AlgebraBatchNorm*(N(C), mode=``norm``), LayerNorm(C) -> AlgebraLayerNorm(N(C));
- MaxPool1d/2d/3d -> the element-norm max pools (``keep_elements=True``); activations, average pools,
  flatten and residual adds act on the real components unchanged.

A Linear that reads spatially flattened conv features (C*H*W inputs) is not supported: pool first.
The input model is not modified; a converted deep copy is returned.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..init import init_model_
from ..layers.lift import AlgebraLift, AlgebraReadout
from ..layers.norm import AlgebraBatchNorm1d, AlgebraBatchNorm2d, AlgebraBatchNorm3d, AlgebraLayerNorm
from ..layers.pool import AlgebraMaxPool1d, AlgebraMaxPool2d, AlgebraMaxPool3d
from ..registry import load_algebra
from .width import matched_width

__all__ = ["convert"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = {nn.BatchNorm1d: AlgebraBatchNorm1d, nn.BatchNorm2d: AlgebraBatchNorm2d, nn.BatchNorm3d: AlgebraBatchNorm3d}
_POOLS = {nn.MaxPool1d: AlgebraMaxPool1d, nn.MaxPool2d: AlgebraMaxPool2d, nn.MaxPool3d: AlgebraMaxPool3d}


def _algebra_conv(nd):
    from .. import layers

    return getattr(layers, f"AlgebraConv{nd}d")


def _order(model: nn.Module, example_input) -> list[str]:
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear,) + _CONVS)]
    if example_input is None:
        return names
    seen: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: seen.append(n) if n not in seen else None)
             for n, m in model.named_modules() if n in names]
    try:
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return seen + [n for n in names if n not in seen]


def convert(model: nn.Module, algebra, match: str | None = "params", method_for_macs: str = "naive",
            layer_method: str | None = None, norm: str = "component", keep_elements: bool = True,
            example_input=None, init: str | None = "he") -> nn.Module:
    """A deep copy of `model` with algebra layers; see the module docstring."""
    A = load_algebra(algebra)
    d = A.dim
    model = copy.deepcopy(model)
    order = _order(model, example_input)
    if not order:
        raise ValueError("the model has no Linear or Conv layers to convert")
    first, last = order[0], order[-1]
    kw = {} if layer_method is None else {"method": layer_method}

    def N(c: int) -> int:
        return matched_width(c, A, match, method_for_macs)

    def replace(name: str, old: nn.Module):
        if isinstance(old, nn.Linear):
            from ..layers import AlgebraLinear

            bias = old.bias is not None
            if name == last and name != first:
                return AlgebraReadout(N(old.in_features), old.out_features, algebra=A, bias=bias)
            if name == first:
                inner = AlgebraLinear(old.in_features, N(old.out_features) if name != last else 1,
                                      algebra=A, bias=bias, **kw)
                mods = [AlgebraLift(old.in_features, algebra=A, mode="embed", dim=-1), inner]
                if name == last:
                    mods.append(AlgebraReadout(1, old.out_features, algebra=A, bias=bias))
                return nn.Sequential(*mods)
            return AlgebraLinear(N(old.in_features), N(old.out_features), algebra=A, bias=bias, **kw)
        if isinstance(old, _CONVS):
            nd = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[type(old)]
            cin, cout, g = old.in_channels, old.out_channels, old.groups
            bias = old.bias is not None
            geo = dict(stride=old.stride, padding=old.padding, dilation=old.dilation)
            if name == last and name != first:
                real = type(old)(N(cin) * d, cout, old.kernel_size, groups=1, bias=bias, **geo)
                return real
            ncin = cin if name == first else N(cin)
            ncout = N(cout)
            if g == 1:
                ng = 1
            elif g == cin == cout:
                ng = ncin if ncin == ncout else None
            else:
                ng = g if (ncin % g == 0 and ncout % g == 0) else None
            if ng is None:
                raise ValueError(f"{name}: cannot convert a grouped convolution (groups={g}, {cin}->{cout}) "
                                 f"to {ncin}->{ncout} elements")
            conv = _algebra_conv(nd)(ncin, ncout, old.kernel_size, groups=ng, bias=bias, algebra=A, **geo, **kw)
            if name == first:
                return nn.Sequential(AlgebraLift(cin, algebra=A, mode="embed", dim=1), conv)
            return conv
        raise TypeError(type(old))

    def swap(name: str, new: nn.Module):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        p = next(old.parameters(), None)
        if p is not None:  # keep the replaced module's device and floating dtype
            new = new.to(device=p.device, dtype=p.dtype if p.is_floating_point() else None)
        setattr(parent, child, new)

    for name, m in list(model.named_modules()):
        if not name:
            continue
        if name in order:
            swap(name, replace(name, m))
        elif type(m) in _BNS:
            swap(name, _BNS[type(m)](N(m.num_features), algebra=A, mode=norm, eps=m.eps, momentum=m.momentum,
                                     affine=m.affine, track_running_stats=m.track_running_stats))
        elif isinstance(m, nn.LayerNorm):
            if len(m.normalized_shape) != 1:
                raise ValueError(f"{name}: only LayerNorm over the last dimension can be converted")
            swap(name, AlgebraLayerNorm(N(m.normalized_shape[0]), algebra=A, eps=m.eps,
                                        elementwise_affine=m.elementwise_affine))
        elif keep_elements and type(m) in _POOLS:
            swap(name, _POOLS[type(m)](m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, algebra=A))
    if init is not None:
        init_model_(model, scheme=init)
    return model
