"""Decoder-only Transformer language model over any algebra.

    lm = TransformerLM(vocab_size=256, d_model=32, n_layers=2, n_heads=4, algebra="H", max_len=128)
    logits = lm(tokens)                       # (B, T) int64 -> (B, T, vocab) real

d_model and d_ff count algebra elements.  Token and position embeddings are real tables of
d_model * d reals read as elements ("a reshaped real layer").  Q, K, V, O and the two MLP layers are
`AlgebraLinear`; heads split the d_model elements into n_heads groups of whole elements; the attention
logits are real inner products over all head_dim * d components, scaled by 1/sqrt(head_dim * d), with a
causal mask; the softmax weights (real) mix the value elements.  Pre-norm blocks with `AlgebraLayerNorm`
(``norm=`` its mode), split activation (``activation=``), element dropout, and an `AlgebraReadout` head.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..init import init_model_
from ..layers.activation import ModReLU, SplitActivation
from ..layers.dropout import AlgebraDropout
from ..layers.lift import AlgebraReadout
from ..layers.norm import AlgebraLayerNorm
from ..registry import load_algebra

__all__ = ["TransformerLM", "AlgebraSelfAttention", "AlgebraMLP", "TransformerBlock"]


def _linear(algebra, cin, cout, bias=True, method=None):
    from ..layers import AlgebraLinear

    kw = {} if method is None else {"method": method}
    return AlgebraLinear(cin, cout, algebra=algebra, bias=bias, **kw)


def _apply(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a features-last layer to (..., F) by flattening the leading dimensions."""
    return layer(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1] + (-1,))


class AlgebraSelfAttention(nn.Module):
    """Causal multi-head self-attention with algebra Q/K/V/O projections and real logits."""

    def __init__(self, d_model: int, n_heads: int, algebra="R", dropout: float = 0.0, bias: bool = True,
                 method=None):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model} elements) must be divisible by n_heads ({n_heads})")
        self.algebra = load_algebra(algebra)
        self.d_model, self.n_heads = d_model, n_heads
        self.head_elements = d_model // n_heads
        self.q = _linear(algebra, d_model, d_model, bias, method)
        self.k = _linear(algebra, d_model, d_model, bias, method)
        self.v = _linear(algebra, d_model, d_model, bias, method)
        self.o = _linear(algebra, d_model, d_model, bias, method)
        self.attn_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        H, hd = self.n_heads, self.head_elements * self.algebra.dim        # hd: reals per head

        def heads(t):
            return t.view(B, T, H, hd).transpose(1, 2)                     # (B, H, T, hd) whole elements

        q, k, v = heads(_apply(self.q, x)), heads(_apply(self.k, x)), heads(_apply(self.v, x))
        logits = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(hd)    # real inner products, all components
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        logits = logits.masked_fill(causal, float("-inf"))
        attn = self.attn_dropout(torch.softmax(logits, dim=-1))
        y = torch.matmul(attn, v)                                          # real weights mix value elements
        return _apply(self.o, y.transpose(1, 2).reshape(B, T, H * hd))

    def extra_macs(self, x_shape) -> int:
        """Real multiply-adds outside the projections (QK^T and AV) for an input (B, T, d_model * d)."""
        B, T = x_shape[0], x_shape[1]
        return 2 * B * T * T * self.d_model * self.algebra.dim


class AlgebraMLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, algebra="R", activation="gelu", dropout: float = 0.0,
                 method=None):
        super().__init__()
        self.fc1 = _linear(algebra, d_model, d_ff, True, method)
        self.act = (ModReLU(d_ff, algebra=algebra, dim=-1) if activation == "modrelu"
                    else SplitActivation(activation, algebra=algebra))
        self.fc2 = _linear(algebra, d_ff, d_model, True, method)
        self.drop = AlgebraDropout(dropout, algebra=algebra, dim=-1)

    def forward(self, x):
        return self.drop(_apply(self.fc2, self.act(_apply(self.fc1, x))))


class TransformerBlock(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, algebra="R", dropout=0.0, norm="component", activation="gelu",
                 method=None):
        super().__init__()
        self.ln1 = AlgebraLayerNorm(d_model, algebra=algebra, mode=norm)
        self.attn = AlgebraSelfAttention(d_model, n_heads, algebra, dropout, True, method)
        self.drop = AlgebraDropout(dropout, algebra=algebra, dim=-1)
        self.ln2 = AlgebraLayerNorm(d_model, algebra=algebra, mode=norm)
        self.mlp = AlgebraMLP(d_model, d_ff, algebra, activation, dropout, method)

    def forward(self, x):
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.mlp(self.ln2(x))


class TransformerLM(nn.Module):
    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                 d_ff: int | None = None, max_len: int = 256, algebra="R", dropout: float = 0.0,
                 norm: str = "component", activation: str = "gelu", method=None, init: str | None = "glorot"):
        super().__init__()
        A = load_algebra(algebra)
        self.algebra = A
        self.vocab_size, self.d_model, self.max_len = vocab_size, d_model, max_len
        self.d_ff = int(d_ff if d_ff is not None else 4 * d_model)
        width = d_model * A.dim
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(max_len, width)
        self.drop = AlgebraDropout(dropout, algebra=A, dim=-1)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, self.d_ff, A, dropout, norm, activation,
                                                     method) for _ in range(n_layers))
        self.ln_f = AlgebraLayerNorm(d_model, algebra=A, mode=norm)
        self.head = AlgebraReadout(d_model, vocab_size, algebra=A, bias=False)
        nn.init.normal_(self.tok.weight, 0.0, 0.02)
        nn.init.normal_(self.pos.weight, 0.0, 0.02)
        if init is not None:
            init_model_(self, scheme=init)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        if T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.max_len}")
        pos = torch.arange(T, device=tokens.device)
        x = self.drop(self.tok(tokens) + self.pos(pos))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token cross entropy on a (B, T) batch."""
        logits = self(tokens[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
