"""Vision Transformer (ViT) over any algebra, laid out like torchvision's `vit_b_16`.

    model = vit("H", image_size=32, patch_size=4, num_layers=6, num_heads=4, hidden_dim=48, mlp_dim=192,
                num_classes=10)
    logits = model(images)                    # (N, 3, 32, 32) real -> (N, 10) real
    # the real ViT-B/16's parameters at d = 4: hidden_dim = matched_width(768, "H", "params", multiple_of=12)

hidden_dim and mlp_dim count algebra elements.  The image is lifted into the algebra (`AlgebraLift`, "embed":
each real channel one element), cut into patches by an algebra convolution with kernel = stride = patch_size
(``conv_proj``), a learned class token (1, 1, hidden_dim * d) is prepended and learned position embeddings
(``encoder.pos_embedding``, (1, patches + 1, hidden_dim * d), normal with std 0.02) are added; the encoder
blocks (``encoder.layers.encoder_layer_i``) are pre-norm: ln_1 -> `AlgebraMultiheadAttention` -> dropout ->
residual, ln_2 -> MLP (AlgebraLinear, GELU on every component, dropout, AlgebraLinear, dropout) -> residual;
then ``encoder.ln`` and an `AlgebraReadout` of the class token (``heads.head``).  Module names follow
torchvision's, so `runtime.models.convert` of a torchvision ViT gives the same structure.  Width matching as
for the other builders: `runtime.models.width` (`matched_width(..., multiple_of=num_heads)` keeps the heads
whole, `match_model` searches a whole model).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..init import init_model_
from ..layers.activation import SplitActivation
from ..layers.attention import AlgebraMultiheadAttention
from ..layers.conv import AlgebraConv2d
from ..layers.dropout import AlgebraDropout
from ..layers.lift import AlgebraLift, AlgebraReadout
from ..layers.linear import AlgebraLinear
from ..layers.norm import AlgebraLayerNorm
from ..learned_algebra import describe

__all__ = ["vit", "AlgebraViT", "ViTEncoderBlock"]


class ViTEncoderBlock(nn.Module):
    """Pre-norm encoder block: x + drop(attn(ln_1(x))), then + mlp(ln_2(.)); x (N, T, hidden_dim * d)."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float, attention_dropout: float,
                 algebra, norm: str = "component", eps: float = 1e-6, method: str | None = None) -> None:
        super().__init__()
        A = describe(algebra)
        self.ln_1 = AlgebraLayerNorm(hidden_dim, algebra=A, mode=norm, eps=eps)
        self.self_attention = AlgebraMultiheadAttention(hidden_dim, num_heads, dropout=attention_dropout,
                                                        batch_first=True, algebra=A, method=method)
        self.dropout = AlgebraDropout(dropout, algebra=A, dim=-1)
        self.ln_2 = AlgebraLayerNorm(hidden_dim, algebra=A, mode=norm, eps=eps)
        self.mlp = nn.Sequential(AlgebraLinear(hidden_dim, mlp_dim, A, method=method), SplitActivation("gelu", A),
                                 AlgebraDropout(dropout, algebra=A, dim=-1),
                                 AlgebraLinear(mlp_dim, hidden_dim, A, method=method),
                                 AlgebraDropout(dropout, algebra=A, dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class _Encoder(nn.Module):
    def __init__(self, seq_length: int, num_layers: int, block_args: dict, width: int, dropout: float,
                 algebra, norm: str, eps: float) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, width).normal_(std=0.02))
        self.dropout = AlgebraDropout(dropout, algebra=algebra, dim=-1)
        self.layers = nn.Sequential(OrderedDict((f"encoder_layer_{i}", ViTEncoderBlock(**block_args))
                                                for i in range(num_layers)))
        self.ln = AlgebraLayerNorm(block_args["hidden_dim"], algebra=algebra, mode=norm, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class AlgebraViT(nn.Module):
    """See the module docstring.  forward: (N, in_channels, image_size, image_size) -> (N, num_classes)."""

    def __init__(self, algebra="R", image_size: int = 224, patch_size: int = 16, num_layers: int = 12,
                 num_heads: int = 12, hidden_dim: int = 768, mlp_dim: int = 3072, num_classes: int = 1000,
                 dropout: float = 0.0, attention_dropout: float = 0.0, in_channels: int = 3,
                 norm: str = "component", eps: float = 1e-6, method: str | None = None,
                 init: str | None = "glorot") -> None:
        super().__init__()
        A = describe(algebra)
        if image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch_size ({patch_size})")
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim} elements) must be divisible by num_heads ({num_heads}); "
                             f"matched_width(..., multiple_of=num_heads) gives such a width")
        self.algebra, self.image_size, self.patch_size = A, image_size, patch_size
        self.hidden_dim, self.mlp_dim = hidden_dim, mlp_dim
        width = hidden_dim * A.dim
        self.conv_proj = nn.Sequential(AlgebraLift(in_channels, algebra=A, mode="embed", dim=1),
                                       AlgebraConv2d(in_channels, hidden_dim, patch_size, stride=patch_size,
                                                     algebra=A, **({} if method is None else {"method": method})))
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        seq = (image_size // patch_size) ** 2 + 1
        block = dict(num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim, dropout=dropout,
                     attention_dropout=attention_dropout, algebra=A, norm=norm, eps=eps, method=method)
        self.encoder = _Encoder(seq, num_layers, block, width, dropout, A, norm, eps)
        self.heads = nn.Sequential(OrderedDict(head=AlgebraReadout(hidden_dim, num_classes, algebra=A)))
        if init is not None:
            init_model_(self, scheme=init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"AlgebraViT: expected {self.image_size}x{self.image_size} images, got {h}x{w}")
        x = self.conv_proj(x).flatten(2).transpose(1, 2)              # (N, patches, hidden_dim * d)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def vit(algebra="R", **kwargs) -> AlgebraViT:
    """Build a ViT over `algebra`; see `AlgebraViT` for the keyword arguments (torchvision's names)."""
    return AlgebraViT(algebra, **kwargs)
