"""Decoder-only Transformer language model over any algebra.

    lm = TransformerLM(vocab_size=256, d_model=32, n_layers=2, n_heads=4, algebra="H", max_len=128)
    logits = lm(tokens)                       # (B, T) int64 -> (B, T, vocab) real

d_model and d_ff count algebra elements.  Token and position embeddings are real tables of
d_model * d reals read as elements ("a reshaped real layer").  Q, K, V, O and the two MLP layers are
`AlgebraLinear`; heads split the d_model elements into n_heads groups of whole elements; the attention
logits are real inner products over all head_dim * d components, scaled by 1/sqrt(head_dim * d), with a
causal mask, computed by `torch.nn.functional.scaled_dot_product_attention` (fused kernels where torch has
them); the softmax weights (real) mix the value elements.  The attention is
`runtime.layers.AlgebraMultiheadAttention` (`AlgebraSelfAttention` adds the key/value cache).  Pre-norm blocks with `AlgebraLayerNorm`
(``norm=`` its mode), split activation (``activation=``), element dropout, and an `AlgebraReadout` head.

    out = lm.generate(prompt, max_new_tokens=100, temperature=0.8, top_k=40)   # (B, T) -> (B, T + 100)

`generate` keeps a key/value cache (`KVCache`, one per attention layer), so each new token costs one
position's projections instead of a forward pass over the whole prefix.
"""
from __future__ import annotations

import torch
from torch import nn

from ..init import init_model_
from ..layers.activation import ModReLU, SplitActivation
from ..layers.attention import AlgebraMultiheadAttention, attend
from ..layers.dropout import AlgebraDropout
from ..layers.lift import AlgebraReadout
from ..layers.norm import AlgebraLayerNorm
from ..learned_algebra import describe

__all__ = ["TransformerLM", "AlgebraSelfAttention", "AlgebraMLP", "TransformerBlock", "KVCache"]


def _linear(algebra, cin, cout, bias=True, method=None):
    from ..layers import AlgebraLinear

    kw = {} if method is None else {"method": method}
    return AlgebraLinear(cin, cout, algebra=algebra, bias=bias, **kw)


def _apply(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a features-last layer to (..., F) by flattening the leading dimensions."""
    y = layer(x.reshape(-1, x.shape[-1]))
    return y.reshape(x.shape[:-1] + (y.shape[-1],))                  # explicit sizes: x may be empty


class KVCache:
    """Keys and values of the positions seen so far for one attention layer.

    k, v: (B, n_heads, capacity, head_reals) buffers, allocated on the first `append` with the dtype and
    device of the keys it receives, filled from position 0; `length` positions are valid.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, H, t, hd) keys and values after the cached ones; return all keys and values so far."""
        t = k.shape[2]
        if self.length + t > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions; {self.length} cached + {t} new "
                             f"do not fit")
        if self.k is None:
            B, H, _, hd = k.shape
            self.k = k.new_empty(B, H, self.capacity, hd)
            self.v = v.new_empty(B, H, self.capacity, hd)
        self.k[:, :, self.length:self.length + t] = k
        self.v[:, :, self.length:self.length + t] = v
        self.length += t
        return self.k[:, :, :self.length], self.v[:, :, :self.length]


class AlgebraSelfAttention(AlgebraMultiheadAttention):
    """Causal multi-head self-attention for the language model: an `AlgebraMultiheadAttention`
    (batch_first, the same projections q, k, v, o and the same `attend`) with a key/value cache."""

    def __init__(self, d_model: int, n_heads: int, algebra="R", dropout: float = 0.0, bias: bool = True,
                 method=None):
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model} elements) must be divisible by n_heads ({n_heads})")
        super().__init__(d_model, n_heads, dropout=dropout, bias=bias, batch_first=True, algebra=algebra,
                         method=method)
        self.d_model, self.n_heads = d_model, n_heads
        self.head_elements = self.head_dim

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x: (B, T, d_model * d) -> (B, T, d_model * d).  With `cache`, x holds the T positions after the
        cached ones: their keys and values are appended and each attends to every cached position."""
        T = x.shape[1]
        q, k, v = self.split_heads(self.q(x)), self.split_heads(self.k(x)), self.split_heads(self.v(x))
        past = 0 if cache is None else cache.length
        if cache is not None:
            k, v = cache.append(k, v)
        mask, causal = None, past == 0 and T > 1
        if past and T > 1:                       # new query i sees the cache and new keys 0..i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
        y, _ = attend(q, k, v, mask, causal, self.dropout if self.training else 0.0)
        return self.merge_heads(y)

    def extra_macs(self, x_shape, *_) -> int:
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

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), cache))
        return x + self.mlp(self.ln2(x))


class TransformerLM(nn.Module):
    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                 d_ff: int | None = None, max_len: int = 256, algebra="R", dropout: float = 0.0,
                 norm: str = "component", activation: str = "gelu", method=None, init: str | None = "glorot"):
        super().__init__()
        A = describe(algebra)
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

    def forward(self, tokens: torch.Tensor, cache: list[KVCache] | None = None) -> torch.Tensor:
        """tokens (B, T) int64 -> logits (B, T, vocab).  With `cache` (one `KVCache` per block, from
        `new_cache`), tokens are the T positions after the cached ones and the cache is extended."""
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a (B, T) int64 tensor, got {tokens.dtype} of shape {tuple(tokens.shape)}")
        B, T = tokens.shape
        start = 0 if cache is None else cache[0].length
        if start + T > self.max_len:
            raise ValueError(f"sequence length {start + T} exceeds max_len {self.max_len}")
        pos = torch.arange(start, start + T, device=tokens.device)
        x = self.drop(self.tok(tokens) + self.pos(pos))
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if cache is None else cache[i])
        return self.head(self.ln_f(x))

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token cross entropy on a (B, T) int64 batch; T >= 2 (each row predicts its tokens 1..T-1)."""
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a (B, T) int64 tensor, got {tokens.dtype} of shape {tuple(tokens.shape)}")
        if tokens.shape[1] < 2 or tokens.shape[0] < 1:
            raise ValueError(f"the loss needs at least 1 row of at least 2 tokens (a token and the next one to "
                             f"predict), got shape {tuple(tokens.shape)}")
        logits = self(tokens[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    def new_cache(self, capacity: int | None = None) -> list[KVCache]:
        """Empty key/value caches (one per block) for up to `capacity` positions (default max_len)."""
        capacity = self.max_len if capacity is None else int(capacity)
        if not 1 <= capacity <= self.max_len:
            raise ValueError(f"cache capacity must lie in [1, max_len={self.max_len}], got {capacity}")
        return [KVCache(capacity) for _ in self.blocks]

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue `prompt` (B, T) int64 by `max_new_tokens` tokens -> (B, T + max_new_tokens).

        temperature 0 is greedy (argmax: the same tokens as recomputing the whole prefix every step);
        temperature > 0 samples from softmax(logits / temperature), restricted to the `top_k` most likely
        tokens when given, drawing from `generator` (seed it for reproducible samples).  Keys and values
        are cached, so each step runs the model on one position.  The model runs in eval mode (no
        dropout) and is put back in its previous mode afterwards; works under `torch.inference_mode()`.
        T + max_new_tokens must not exceed max_len (the position table has max_len rows).
        """
        if prompt.dim() != 2 or prompt.dtype != torch.long:
            raise ValueError(f"prompt must be a (B, T) int64 tensor, got {prompt.dtype} of shape "
                             f"{tuple(prompt.shape)}")
        B, T = prompt.shape
        if T < 1:
            raise ValueError("prompt must hold at least one token per sequence")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if T + max_new_tokens > self.max_len:
            raise ValueError(f"prompt length {T} + max_new_tokens {max_new_tokens} = {T + max_new_tokens} "
                             f"exceeds max_len {self.max_len} (the learned position table has max_len rows): "
                             f"shorten the prompt (e.g. prompt[:, -{max(1, self.max_len - max_new_tokens)}:]) "
                             f"or ask for at most {self.max_len - T} new tokens")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if prompt.numel() and (int(prompt.min()) < 0 or int(prompt.max()) >= self.vocab_size):
            raise ValueError(f"prompt tokens must lie in [0, {self.vocab_size}), got "
                             f"[{int(prompt.min())}, {int(prompt.max())}]")
        was_training = self.training
        self.eval()
        try:
            out = torch.empty(B, T + max_new_tokens, dtype=torch.long, device=prompt.device)
            out[:, :T] = prompt
            if max_new_tokens == 0:
                return out
            cache = self.new_cache(T + max_new_tokens)
            logits = self(prompt, cache)[:, -1]                      # prefill: the whole prompt at once
            for i in range(max_new_tokens):
                nxt = self._pick(logits, temperature, top_k, generator)
                out[:, T + i] = nxt
                if i + 1 < max_new_tokens:
                    logits = self(nxt.unsqueeze(1), cache)[:, -1]   # one new position per step
            return out
        finally:
            self.train(was_training)

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, top_k: int | None,
              generator: torch.Generator | None) -> torch.Tensor:
        """The next token per row of (B, vocab) logits: argmax, or a sample at `temperature` among top_k."""
        if temperature == 0:
            return logits.argmax(-1)
        logits = logits.float() / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
