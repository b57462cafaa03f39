"""Transformer encoder / decoder layers and stacks over an algebra, mirroring torch.nn's.

    layer = AlgebraTransformerEncoderLayer(d_model=16, nhead=4, algebra="H", batch_first=True)
    enc = AlgebraTransformerEncoder(layer, num_layers=6)
    y = enc(x, mask=None, src_key_padding_mask=None, is_causal=False)     # (B, T, 16*4) -> (B, T, 16*4)

d_model and dim_feedforward count algebra elements.  Each layer has torch's submodules under torch's names:
self_attn (and multihead_attn in the decoder) `AlgebraMultiheadAttention`; linear1, linear2 `AlgebraLinear`;
norm1, norm2 (, norm3) `AlgebraLayerNorm` (``norm=`` its mode; "component" is torch's LayerNorm over all
d_model * d reals); dropout, dropout1, dropout2 (, dropout3) `AlgebraDropout` (whole elements); the activation
(a name, a callable or a module) acts on every real component (`SplitActivation`).  Post-norm
(x = norm(x + block(x))) unless ``norm_first``.  With algebra "R" the layers compute exactly what torch's
compute; `load_torch_state_dict` loads a torch layer's or stack's weights (algebra "R").

The stacks deep-copy the given layer num_layers times (as torch does) and apply an optional final norm.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from .activation import SplitActivation
from .attention import AlgebraMultiheadAttention, torch_attention_state
from .dropout import AlgebraDropout
from .linear import AlgebraLinear
from .norm import AlgebraLayerNorm

__all__ = ["AlgebraTransformerEncoderLayer", "AlgebraTransformerDecoderLayer", "AlgebraTransformerEncoder",
           "AlgebraTransformerDecoder", "torch_transformer_state"]


def _activation(activation) -> nn.Module:
    return activation if isinstance(activation, SplitActivation) else SplitActivation(activation)


def torch_transformer_state(state: dict, d: int, who: str) -> dict:
    """A torch Transformer layer's / stack's state dict -> the algebra version's over R: attention entries
    renamed (`torch_attention_state`), every other tensor given a trailing component axis of size 1 where
    the algebra layer has one (weights of linear layers and norms)."""
    if d != 1:
        raise ValueError(f"{who}: torch weights are real; loading them needs algebra 'R' (d = 1), not d = {d}")
    keys = ("self_attn.", "multihead_attn.")
    for p in sorted({n[:n.index(key) + len(key)] for n in state for key in keys if key in n}):
        state = torch_attention_state(state, d, who, p)
    out = {}
    for n, t in state.items():
        leaf = n.rsplit(".", 2)
        if len(leaf) >= 2 and leaf[-2].startswith(("linear", "norm")) and leaf[-1] in ("weight", "bias"):
            t = t.unsqueeze(-1)
        out[n] = t
    return out


def _add_feedforward_and_norms(layer: nn.Module, blocks: int, d_model: int, dim_feedforward: int, dropout: float,
                               activation, layer_norm_eps: float, norm_first: bool, bias: bool, method, norm: str,
                               fk: dict) -> None:
    """The parts torch's encoder / decoder layers share, under torch's names: linear1, dropout, linear2 (the MLP),
    norm1..normN and dropout1..dropoutN (one per residual block), norm_first, activation; over layer.algebra."""
    A = layer.algebra
    layer.linear1 = AlgebraLinear(d_model, dim_feedforward, A, bias=bias, method=method, **fk)
    layer.dropout = AlgebraDropout(dropout, algebra=A, dim=-1)
    layer.linear2 = AlgebraLinear(dim_feedforward, d_model, A, bias=bias, method=method, **fk)
    layer.norm_first = norm_first
    for i in range(1, blocks + 1):
        setattr(layer, f"norm{i}", AlgebraLayerNorm(d_model, algebra=A, mode=norm, eps=layer_norm_eps, bias=bias,
                                                    **fk))
        setattr(layer, f"dropout{i}", AlgebraDropout(dropout, algebra=A, dim=-1))
    layer.activation = _activation(activation)


class _LoadTorch:
    def load_torch_state_dict(self, state: dict) -> None:
        """Load the state dict of the matching torch module (algebra "R" only: torch's weights are real)."""
        self.load_state_dict(torch_transformer_state(state, self.algebra.dim, type(self).__name__))


class AlgebraTransformerEncoderLayer(_LoadTorch, nn.Module):
    """torch.nn.TransformerEncoderLayer over an algebra (d_model, dim_feedforward in elements).

    forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False): (B, T, d_model*d) when
    batch_first, else (T, B, d_model*d); masks as AlgebraMultiheadAttention.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None, dtype=None, *, algebra="R",
                 method: str | None = None, norm: str = "component") -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.self_attn = AlgebraMultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                   batch_first=batch_first, algebra=algebra, method=method, **fk)
        self.algebra = self.self_attn.algebra
        _add_feedforward_and_norms(self, 2, d_model, dim_feedforward, dropout, activation, layer_norm_eps, norm_first,
                                   bias, method, norm, fk)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class AlgebraTransformerDecoderLayer(_LoadTorch, nn.Module):
    """torch.nn.TransformerDecoderLayer over an algebra: self-attention, cross-attention to `memory`, MLP.

    forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None, dtype=None, *, algebra="R",
                 method: str | None = None, norm: str = "component") -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        mha = dict(dropout=dropout, bias=bias, batch_first=batch_first, algebra=algebra, method=method, **fk)
        self.self_attn = AlgebraMultiheadAttention(d_model, nhead, **mha)
        self.multihead_attn = AlgebraMultiheadAttention(d_model, nhead, **mha)
        self.algebra = self.self_attn.algebra
        _add_feedforward_and_norms(self, 3, d_model, dim_feedforward, dropout, activation, layer_norm_eps, norm_first,
                                   bias, method, norm, fk)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, tgt_key_padding_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False) -> torch.Tensor:
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
        x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
        return self.norm3(x + self._ff_block(x))

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal):
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                need_weights=False, is_causal=is_causal)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))


def _stack(layer: nn.Module, num_layers: int, who: str) -> nn.ModuleList:
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"{who}: num_layers must be a positive int, got {num_layers!r}")
    return nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))


class AlgebraTransformerEncoder(_LoadTorch, nn.Module):
    """num_layers deep copies of an AlgebraTransformerEncoderLayer, then `norm` (optional), as torch's.

    forward(src, mask=None, src_key_padding_mask=None, is_causal=False)."""

    def __init__(self, encoder_layer: AlgebraTransformerEncoderLayer, num_layers: int,
                 norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = _stack(encoder_layer, num_layers, "AlgebraTransformerEncoder")
        self.num_layers, self.norm, self.algebra = num_layers, norm, encoder_layer.algebra

    def forward(self, src: torch.Tensor, mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, is_causal: bool | None = None) -> torch.Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return x if self.norm is None else self.norm(x)


class AlgebraTransformerDecoder(_LoadTorch, nn.Module):
    """num_layers deep copies of an AlgebraTransformerDecoderLayer, then `norm` (optional), as torch's.

    forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False)."""

    def __init__(self, decoder_layer: AlgebraTransformerDecoderLayer, num_layers: int,
                 norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = _stack(decoder_layer, num_layers, "AlgebraTransformerDecoder")
        self.num_layers, self.norm, self.algebra = num_layers, norm, decoder_layer.algebra

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, tgt_key_padding_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None, tgt_is_causal: bool | None = None,
                memory_is_causal: bool = False) -> torch.Tensor:
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)
        return x if self.norm is None else self.norm(x)
