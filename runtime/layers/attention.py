"""Multi-head attention over an algebra, mirroring `torch.nn.MultiheadAttention`.

    mha = AlgebraMultiheadAttention(embed_dim=16, num_heads=4, algebra="H", batch_first=True)
    y, w = mha(query, key, value)          # (B, L, 16*4), (B, S, kdim*4), (B, S, vdim*4) -> (B, L, 16*4), (B, L, S)

embed_dim, kdim and vdim count algebra elements.  Where the algebra enters: the Q, K, V and output projections
are `AlgebraLinear` layers (weights on the left, any method).  The attention itself is real: heads split the
embed_dim elements into num_heads groups of whole elements (head_dim * d reals each), the score of a query and
a key is the real inner product of their head's real components, <q, k> = sum of q_r k_r over all
head_dim * d components (for C and H this is Re(q conj(k)) summed over the head's elements), scaled by
1 / sqrt(head_dim * d); the softmax weights (real) mix the value elements component-wise.  With algebra "R"
the layer is exactly torch's (same masks, same scale), and `load_torch_state_dict` loads torch's weights.

The scores and the mixing run through `torch.nn.functional.scaled_dot_product_attention` (fused kernels where
torch has them) unless the weights are asked for (``need_weights=True``, torch's default), when they are
computed explicitly as torch does (softmax of the scaled scores plus masks; dropout on the returned weights).

Masks follow torch: ``attn_mask`` (L, S) or (B * num_heads, L, S), bool (True = may NOT attend) or float
(added to the scores); ``key_padding_mask`` (B, S), bool (True = ignore that key) or float; ``is_causal``
applies the causal mask when no attn_mask is given (torch requires one; here the hint alone suffices) and is
a hint that attn_mask is causal otherwise.  Unbatched inputs (L, E*d) are accepted as in torch.

`attend(q, k, v, ...)` is the one attention computation of the project (TransformerLM's cached decoding uses
it too).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional as AF
from ..checks import require_real_floating
from .linear import AlgebraLinear

__all__ = ["AlgebraMultiheadAttention", "attend", "additive_mask", "torch_attention_state"]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           is_causal: bool = False, dropout_p: float = 0.0, need_weights: bool = False
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention on real components.

    q (B, H, L, hd), k (B, H, S, hd), v (B, H, S, hv); mask broadcastable to (B, H, L, S) in
    scaled_dot_product_attention's convention (bool: True = may attend; float: added to the scores);
    is_causal: query i sees keys 0..i (mask must then be None).  Scale 1 / sqrt(hd).
    Returns (y (B, H, L, hv), weights (B, H, L, S) after dropout, or None unless need_weights).
    """
    if is_causal and mask is not None:
        raise ValueError("attend: pass either mask or is_causal=True, not both")
    if not need_weights:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
        return y, None
    L, S = q.shape[-2], k.shape[-2]
    if is_causal:
        mask = torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    if mask is not None:
        scores = (scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask)
    w = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        w = F.dropout(w, p=dropout_p)
    return w @ v, w


def additive_mask(mask: torch.Tensor | None, dtype: torch.dtype, who: str, label: str) -> torch.Tensor | None:
    """torch's mask conventions -> a float mask to add to the scores (bool True -> -inf, float kept)."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    if not mask.is_floating_point():
        raise TypeError(f"{who}: {label} must be a bool or floating-point tensor, got {mask.dtype}")
    return mask.to(dtype)


class AlgebraMultiheadAttention(nn.Module):
    """Multi-head attention with algebra Q/K/V/O projections (see the module docstring).

    Args (as torch.nn.MultiheadAttention, counts in algebra elements):
        embed_dim: elements per position of the query and the output; divisible by num_heads.
        num_heads: heads; each holds embed_dim // num_heads whole elements.
        dropout: dropout probability on the attention weights (training only).
        bias: biases of the four projections.
        add_bias_kv: learn one extra key and value (bias_k, bias_v: (1, 1, embed_dim * d)) appended to the keys.
        add_zero_attn: append a zero key and value after the heads are split.
        kdim, vdim: elements per key / value position (default embed_dim).
        batch_first: (B, L, E*d) instead of torch's default (L, B, E*d).
        algebra, method: as AlgebraLinear (the projections' algebra and method).

    Submodules q, k, v, o: AlgebraLinear(embed_dim|kdim|vdim -> embed_dim) and (embed_dim -> embed_dim).
    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
            average_attn_weights=True, is_causal=False) -> (output, weights or None) as torch:
    output (B, L, E*d) (batch_first) or (L, B, E*d), weights (B, L, S) averaged over heads or (B, H, L, S).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None, *,
                 algebra="R", method: str | None = None) -> None:
        super().__init__()
        A = AF.resolve_algebra(algebra, "AlgebraMultiheadAttention")
        for label, v in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"AlgebraMultiheadAttention: {label} must be a positive int, got {v!r}")
        if embed_dim % num_heads:
            raise ValueError(f"AlgebraMultiheadAttention: embed_dim ({embed_dim} elements) must be divisible by "
                             f"num_heads ({num_heads})")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"AlgebraMultiheadAttention: dropout must lie in [0, 1], got {dropout}")
        self.algebra = A
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.head_dim = embed_dim // num_heads                  # elements per head
        self.dropout, self.batch_first = float(dropout), batch_first
        self.add_zero_attn = add_zero_attn
        fk = {"device": device, "dtype": dtype, "method": method}
        self.q = AlgebraLinear(embed_dim, embed_dim, A, bias=bias, **fk)
        self.k = AlgebraLinear(self.kdim, embed_dim, A, bias=bias, **fk)
        self.v = AlgebraLinear(self.vdim, embed_dim, A, bias=bias, **fk)
        self.o = AlgebraLinear(embed_dim, embed_dim, A, bias=bias, **fk)
        if add_bias_kv:
            width = embed_dim * A.dim
            self.bias_k = nn.Parameter(torch.empty(1, 1, width, device=device, dtype=dtype))
            self.bias_v = nn.Parameter(torch.empty(1, 1, width, device=device, dtype=dtype))
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)
        else:
            self.bias_k = self.bias_v = None

    @property
    def head_reals(self) -> int:
        """Real components per head (head_dim * d): the length of the vectors whose inner products score."""
        return self.head_dim * self.algebra.dim

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, E*d) -> (B, H, T, head_dim*d): each head gets whole elements."""
        B, T, _ = t.shape
        return t.view(B, T, self.num_heads, self.head_reals).transpose(1, 2)

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        """(B, H, T, head_dim*d) -> the output projection of (B, T, E*d)."""
        B, H, T, hd = y.shape
        return self.o(y.transpose(1, 2).reshape(B, T, H * hd))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        who = "AlgebraMultiheadAttention"
        for label, t in (("query", query), ("key", key), ("value", value)):
            require_real_floating(t, who, label)
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
            raise ValueError(f"{who}: query, key and value must be all 2-D or all 3-D, got "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        B, L, _ = query.shape
        S = key.shape[1]
        H = self.num_heads
        q, k, v = self.q(query), self.k(key), self.v(value)
        dt = q.dtype
        kpm = additive_mask(key_padding_mask, dt, who, "key_padding_mask")
        am = additive_mask(attn_mask, dt, who, "attn_mask")
        if kpm is not None and kpm.shape != (B, S):
            raise ValueError(f"{who}: key_padding_mask must have shape {(B, S)}, got {tuple(kpm.shape)}")
        if am is not None:
            if am.dim() == 2 and am.shape == (L, S):
                am = am.view(1, 1, L, S)
            elif am.dim() == 3 and am.shape == (B * H, L, S):
                am = am.view(B, H, L, S)
            else:
                raise ValueError(f"{who}: attn_mask must have shape {(L, S)} or {(B * H, L, S)}, got "
                                 f"{tuple(am.shape)}")
        causal = is_causal and am is None
        if causal and (kpm is not None or self.bias_k is not None or self.add_zero_attn):
            am = torch.zeros(L, S, dtype=dt, device=q.device).masked_fill(
                torch.ones(L, S, dtype=torch.bool, device=q.device).triu(1), float("-inf")).view(1, 1, L, S)
            causal = False
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(B, 1, -1)], 1)
            v = torch.cat([v, self.bias_v.expand(B, 1, -1)], 1)
            am = None if am is None else F.pad(am, (0, 1))
            kpm = None if kpm is None else F.pad(kpm, (0, 1))
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(B, H, 1, k.shape[-1])], 2)
            v = torch.cat([v, v.new_zeros(B, H, 1, v.shape[-1])], 2)
            am = None if am is None else F.pad(am, (0, 1))
            kpm = None if kpm is None else F.pad(kpm, (0, 1))
        mask = am
        if kpm is not None:
            kpm = kpm.view(B, 1, 1, -1)
            mask = kpm if mask is None else mask + kpm
        y, w = attend(q, k, v, mask, causal, self.dropout if self.training else 0.0, need_weights)
        out = self.merge_heads(y)
        if w is not None and average_attn_weights:
            w = w.mean(dim=1)
        if unbatched:
            out = out.squeeze(0)
            w = None if w is None else w.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, w

    def extra_macs(self, query_shape, key_shape=None, *_) -> int:
        """Real multiply-adds outside the projections (scores and mixing): 2 * B * L * S * embed_dim * d."""
        if key_shape is None:
            key_shape = query_shape
        S = key_shape[-2] if len(key_shape) == 2 or self.batch_first else key_shape[0]
        S += (self.bias_k is not None) + self.add_zero_attn
        return 2 * math.prod(query_shape[:-1]) * S * self.embed_dim * self.algebra.dim

    def load_torch_state_dict(self, state: dict) -> None:
        """Load a torch.nn.MultiheadAttention state dict (algebra "R" only: the weights are real)."""
        self.load_state_dict(torch_attention_state(state, self.algebra.dim, "AlgebraMultiheadAttention"))

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, algebra={self.algebra.name}, "
                f"kdim={self.kdim}, vdim={self.vdim}, dropout={self.dropout}, batch_first={self.batch_first}")


def torch_attention_state(state: dict, d: int, who: str, prefix: str = "") -> dict:
    """Rename and reshape the entries of a torch.nn.MultiheadAttention state dict (under `prefix`) for
    AlgebraMultiheadAttention over R; other entries pass unchanged."""
    if d != 1:
        raise ValueError(f"{who}: torch weights are real; loading them needs algebra 'R' (d = 1), not d = {d}")
    out = {}
    for name, t in state.items():
        if not name.startswith(prefix):
            out[name] = t
            continue
        rest = name[len(prefix):]
        if rest == "in_proj_weight":
            for part, w in zip("qkv", t.chunk(3, 0)):
                out[f"{prefix}{part}.weight"] = w.unsqueeze(-1)
        elif rest == "in_proj_bias":
            for part, b in zip("qkv", t.chunk(3, 0)):
                out[f"{prefix}{part}.bias"] = b.unsqueeze(-1)
        elif rest in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            out[f"{prefix}{rest[0]}.weight"] = t.unsqueeze(-1)
        elif rest in ("out_proj.weight", "out_proj.bias"):
            out[f"{prefix}o.{rest.split('.')[1]}"] = t.unsqueeze(-1)
        else:
            out[name] = t
    return out
