"""Swap a real model's Linear / Conv / recurrent layers and norms for algebra ones.

    algebra_model = convert(real_model, "H", match="params")

Every real channel width C becomes N(C) algebra elements (`matched_width`: match="params" -> C/sqrt(d),
"macs" -> C/sqrt(c_method), "width" -> C/d, None -> C), deterministically per width, so residual adds and
concatenations that agree in the real model agree after conversion.  In module registration order
(or the order of a forward pass when ``example_input`` is given):

- the first Linear/Conv keeps its real input: it becomes ``Sequential(AlgebraLift(in, mode="embed"),
  AlgebraLinear/AlgebraConv(in, N(out)))``;
- the last Linear/Conv keeps its real output: ``AlgebraReadout(N(in), out)`` for a Linear, a real conv
  over the N(in)*d components for a Conv;
- every other Linear / Conv1d/2d/3d / ConvTranspose1d/2d/3d becomes the algebra layer with N(in) -> N(out)
  (same kernel, stride, padding, output_padding, dilation; groups must be 1 or depthwise);
- RNN / GRU / LSTM (and their cells) become AlgebraRNN / AlgebraGRU / AlgebraLSTM (cells) with
  N(input_size) -> N(hidden_size) and the same num_layers, bias, batch_first, dropout, bidirectional (as the
  first layer they read real features through an AlgebraLift); they cannot be the last layer (their outputs
  and states are algebra-valued: end with a Linear) and LSTM's proj_size is refused.  A bidirectional layer
  outputs 2 N(H) elements: the next layer (converted from 2H real features) expects N(2H), so pick H with
  N(2H) == 2 N(H) (the next layer refuses a mismatch with a shape error);
- BatchNorm1d/2d/3d(C) -> AlgebraBatchNorm*(N(C), mode=``norm``), LayerNorm(C) -> AlgebraLayerNorm(N(C)),
  GroupNorm(G, C) -> AlgebraGroupNorm(G, N(C)) (N(C) must be divisible by G), InstanceNorm1d/2d/3d(C) ->
  AlgebraInstanceNorm*(N(C)), all with mode=``norm`` and the real layer's eps / momentum / affine /
  track_running_stats;
- MaxPool1d/2d/3d -> the element-norm max pools (``keep_elements=True``); activations, average pools,
  flatten and residual adds act on the real components unchanged;
- MultiheadAttention(E, heads, kdim, vdim) -> AlgebraMultiheadAttention(N(E), heads, N(kdim), N(vdim)) with the
  same dropout, bias, add_bias_kv, add_zero_attn, batch_first (its out_proj is part of it, not a Linear of its
  own); a width that is some attention's embed_dim is rounded to a multiple of its heads (all such heads),
  so the heads hold whole elements;
- torchvision-ViT-style models (`vit_b_16` and kin: conv_proj, class_token, encoder.pos_embedding,
  encoder.layers of blocks with ln_1, self_attention, ln_2, mlp, heads): parameters named ``class_token`` and
  ``pos_embedding`` of real width C are replaced by ones of N(C)*d reals (zeros and normal(0, 0.02), as
  torchvision initialises them), and an int attribute ``hidden_dim`` equal to an attention's embed_dim (the
  width torchvision reshapes the patches to) becomes N(hidden_dim)*d.  Blocks whose forward calls the
  attention as torchvision's does (``self_attention(x, x, x, need_weights=False)``) convert; torch's
  nn.TransformerEncoderLayer does not (its fast path reads torch-only attributes): build
  `runtime.layers.AlgebraTransformerEncoderLayer` instead.

A Linear that reads spatially flattened conv features (C*H*W inputs) is not supported: pool first.
The input model is not modified; a converted deep copy is returned.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..init import init_model_
from ..layers.attention import AlgebraMultiheadAttention
from ..layers.groupnorm import AlgebraGroupNorm, AlgebraInstanceNorm1d, AlgebraInstanceNorm2d, AlgebraInstanceNorm3d
from ..layers.lift import AlgebraLift, AlgebraReadout
from ..layers.norm import AlgebraBatchNorm1d, AlgebraBatchNorm2d, AlgebraBatchNorm3d, AlgebraLayerNorm
from ..layers.recurrent import (AlgebraGRU, AlgebraGRUCell, AlgebraLSTM, AlgebraLSTMCell, AlgebraRNN,
                                AlgebraRNNCell)
from ..layers.pool import AlgebraMaxPool1d, AlgebraMaxPool2d, AlgebraMaxPool3d
from ..registry import load_algebra
from .width import matched_width

__all__ = ["convert", "LiftedRecurrent"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_RNNS = {nn.RNN: AlgebraRNN, nn.GRU: AlgebraGRU, nn.LSTM: AlgebraLSTM, nn.RNNCell: AlgebraRNNCell,
         nn.GRUCell: AlgebraGRUCell, nn.LSTMCell: AlgebraLSTMCell}
_BNS = {nn.BatchNorm1d: AlgebraBatchNorm1d, nn.BatchNorm2d: AlgebraBatchNorm2d, nn.BatchNorm3d: AlgebraBatchNorm3d}
_INS = {nn.InstanceNorm1d: AlgebraInstanceNorm1d, nn.InstanceNorm2d: AlgebraInstanceNorm2d,
        nn.InstanceNorm3d: AlgebraInstanceNorm3d}
_POOLS = {nn.MaxPool1d: AlgebraMaxPool1d, nn.MaxPool2d: AlgebraMaxPool2d, nn.MaxPool3d: AlgebraMaxPool3d}


def _algebra_conv(old: nn.Module):
    from .. import layers

    return getattr(layers, "Algebra" + type(old).__name__)


class LiftedRecurrent(nn.Module):
    """A converted recurrent layer that reads real features: forward(input, hx) = rnn(lift(input), hx)."""

    def __init__(self, lift: AlgebraLift, rnn: nn.Module) -> None:
        super().__init__()
        self.lift, self.rnn = lift, rnn

    def forward(self, input: torch.Tensor, hx=None):
        return self.rnn(self.lift(input), hx)


def _order(model: nn.Module, example_input) -> list[str]:
    inside = tuple(n + "." for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention))
    names = [n for n, m in model.named_modules()
             if (isinstance(m, (nn.Linear,) + _CONVS) or type(m) in _RNNS) and not (inside and n.startswith(inside))]
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
        raise ValueError("the model has no Linear, Conv or recurrent layers to convert")
    first, last = order[0], order[-1]
    kw = {} if layer_method is None else {"method": layer_method}

    heads: dict[int, int] = {}                      # width -> lcm of the heads of attentions that embed it
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            heads[m.embed_dim] = math.lcm(heads.get(m.embed_dim, 1), m.num_heads)

    def N(c: int) -> int:
        return matched_width(c, A, match, method_for_macs, multiple_of=heads.get(c, 1))

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
        if type(old) in _RNNS:
            return recurrent(name, old)
        if isinstance(old, _CONVS):
            cin, cout, g = old.in_channels, old.out_channels, old.groups
            bias = old.bias is not None
            geo = dict(stride=old.stride, padding=old.padding, dilation=old.dilation)
            if old.transposed:
                geo["output_padding"] = old.output_padding
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
            conv = _algebra_conv(old)(ncin, ncout, old.kernel_size, groups=ng, bias=bias, algebra=A, **geo, **kw)
            if name == first:
                return nn.Sequential(AlgebraLift(cin, algebra=A, mode="embed", dim=1), conv)
            return conv
        raise TypeError(type(old))

    def recurrent(name: str, old: nn.Module) -> nn.Module:
        if name == last:
            raise ValueError(f"{name}: a {type(old).__name__} cannot be the last converted layer (its outputs and "
                             f"states would be algebra-valued); end the model with a Linear")
        if getattr(old, "proj_size", 0):
            raise ValueError(f"{name}: LSTM with proj_size={old.proj_size} has no algebra counterpart")
        args = dict(bias=old.bias, algebra=A, **kw)
        if isinstance(old, nn.RNNBase):
            args.update(num_layers=old.num_layers, batch_first=old.batch_first, dropout=old.dropout,
                        bidirectional=old.bidirectional)
        if isinstance(old, (nn.RNN, nn.RNNCell)):
            args["nonlinearity"] = old.nonlinearity
        new = _RNNS[type(old)](old.input_size if name == first else N(old.input_size), N(old.hidden_size), **args)
        if name == first:
            return LiftedRecurrent(AlgebraLift(old.input_size, algebra=A, mode="embed", dim=-1), new)
        return new

    def swap(name: str, new: nn.Module):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        p = next(old.parameters(), None)
        if p is not None:  # keep the replaced module's device and floating dtype
            new = new.to(device=p.device, dtype=p.dtype if p.is_floating_point() else None)
        setattr(parent, child, new)

    for name, m in list(model.named_modules()):
        for pname, p in list(m.named_parameters(recurse=False)):
            if pname in ("class_token", "pos_embedding"):
                new = torch.zeros(*p.shape[:-1], N(p.shape[-1]) * d, device=p.device, dtype=p.dtype)
                if pname == "pos_embedding":
                    new.normal_(std=0.02)
                setattr(m, pname, nn.Parameter(new, requires_grad=p.requires_grad))
        if isinstance(getattr(m, "hidden_dim", None), int) and m.hidden_dim in heads:
            m.hidden_dim = N(m.hidden_dim) * d
        if not name:
            continue
        if isinstance(m, nn.MultiheadAttention):
            E = N(m.embed_dim)
            swap(name, AlgebraMultiheadAttention(
                E, m.num_heads, dropout=m.dropout, bias=m.in_proj_bias is not None,
                add_bias_kv=m.bias_k is not None, add_zero_attn=m.add_zero_attn,
                kdim=N(m.kdim) if m.kdim != m.embed_dim else E, vdim=N(m.vdim) if m.vdim != m.embed_dim else E,
                batch_first=m.batch_first, algebra=A, **kw))
            continue
        if name in order:
            swap(name, replace(name, m))
        elif type(m) in _BNS:
            swap(name, _BNS[type(m)](N(m.num_features), algebra=A, mode=norm, eps=m.eps, momentum=m.momentum,
                                     affine=m.affine, track_running_stats=m.track_running_stats))
        elif type(m) in _INS:
            swap(name, _INS[type(m)](N(m.num_features), algebra=A, mode=norm, eps=m.eps, momentum=m.momentum,
                                     affine=m.affine, track_running_stats=m.track_running_stats))
        elif isinstance(m, nn.GroupNorm):
            if N(m.num_channels) % m.num_groups:
                raise ValueError(f"{name}: GroupNorm({m.num_groups}, {m.num_channels}) becomes "
                                 f"{N(m.num_channels)} elements, which {m.num_groups} groups do not divide; "
                                 f"choose another match= or num_groups")
            swap(name, AlgebraGroupNorm(m.num_groups, N(m.num_channels), algebra=A, mode=norm, eps=m.eps,
                                        affine=m.affine))
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
