"""ViT builder and the conversion of torchvision-style ViTs, against a real ViT built like torchvision's
vit_b_16 out of torch.nn pieces (torchvision itself is not needed)."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from runtime import counting, load_algebra
from runtime.layers import AlgebraMultiheadAttention
from runtime.layers.attention import torch_attention_state
from runtime.models import convert, matched_width, vit

pytestmark = pytest.mark.usefixtures("one_thread")


class TvEncoderBlock(nn.Module):                      # torchvision.models.vision_transformer.EncoderBlock
    def __init__(self, heads, hidden, mlp):
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, hidden),
                                 nn.Dropout(0.0))

    def forward(self, inp):
        x = self.ln_1(inp)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + inp
        return x + self.mlp(self.ln_2(x))


class TvEncoder(nn.Module):
    def __init__(self, seq, layers, heads, hidden, mlp):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq, hidden).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(OrderedDict((f"encoder_layer_{i}", TvEncoderBlock(heads, hidden, mlp))
                                                for i in range(layers)))
        self.ln = nn.LayerNorm(hidden, eps=1e-6)

    def forward(self, x):
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class TvViT(nn.Module):                               # torchvision.models.VisionTransformer, without extras
    def __init__(self, image_size=8, patch_size=4, layers=2, heads=2, hidden=8, mlp=16, classes=5):
        super().__init__()
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden
        self.conv_proj = nn.Conv2d(3, hidden, patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.encoder = TvEncoder((image_size // patch_size) ** 2 + 1, layers, heads, hidden, mlp)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden, classes)))

    def forward(self, x):
        n = x.shape[0]
        p = self.patch_size
        x = self.conv_proj(x).reshape(n, self.hidden_dim, (self.image_size // p) ** 2).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def load_real(target: nn.Module, real: nn.Module) -> None:
    """Copy a real ViT's weights into an algebra-R model of the same structure (names and d = 1 reshapes)."""
    src = real.state_dict()
    for prefix in {k[:k.index("self_attention.") + 15] for k in src if "self_attention." in k}:
        src = torch_attention_state(src, 1, "test", prefix)
    dst = target.state_dict()
    for k, v in dst.items():
        v.copy_(src[k.replace("conv_proj.1.", "conv_proj.")].reshape(v.shape))


def test_vit_over_R_equals_the_real_vit():
    torch.manual_seed(0)
    real = TvViT().double()
    model = vit("R", image_size=8, patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
                num_classes=5).double()
    load_real(model, real)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    assert torch.allclose(model(x), real(x), atol=1e-12)


def test_convert_torchvision_style_vit_over_R_is_the_same_model():
    torch.manual_seed(1)
    real = TvViT().double()
    conv = convert(real, "R", match=None, init=None)
    assert isinstance(conv.encoder.layers.encoder_layer_0.self_attention, AlgebraMultiheadAttention)
    load_real(conv, real)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert torch.allclose(conv(x), real(x), atol=1e-12)


@pytest.mark.parametrize("name", ["C", "H", "M2R", "Cross3"])
def test_convert_vit_to_an_algebra_trains(name):
    torch.manual_seed(2)
    real = TvViT(hidden=12, heads=3, mlp=24)
    A = load_algebra(name)
    conv = convert(real, name, match="params")
    E = matched_width(12, name, "params", multiple_of=3)
    attn = conv.encoder.layers.encoder_layer_1.self_attention
    assert attn.embed_dim == E and E % 3 == 0 and conv.hidden_dim == E * A.dim
    assert conv.class_token.shape == (1, 1, E * A.dim) and conv.encoder.pos_embedding.shape == (1, 5, E * A.dim)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    opt = torch.optim.Adam(conv.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = nn.functional.cross_entropy(conv(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("name", ["C", "H", "M2R", "Dual", "M2C"])
def test_vit_builder_per_algebra_and_width_matching(name):
    torch.manual_seed(3)
    A = load_algebra(name)
    E = matched_width(24, A, "params", multiple_of=2)
    M = matched_width(48, A, "params")
    model = vit(name, image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=E, mlp_dim=M,
                num_classes=4)
    real = TvViT(hidden=24, heads=2, mlp=48, layers=1, classes=4)
    x = torch.randn(2, 3, 8, 8)
    assert model(x).shape == (2, 4)
    rep = counting.count(model, x)
    assert rep.params == sum(p.numel() for p in model.parameters())
    # the encoder's algebra layers hold d * N^2 parameters against the real C^2: equal up to rounding of N
    alg = sum(lc.params for lc in rep.layers if lc.kind in ("AlgebraLinear",))
    ref = sum(m.weight.numel() + m.bias.numel() for m in real.modules() if isinstance(m, nn.Linear)) - 4 * 25
    ref += sum(m.in_proj_weight.numel() + m.in_proj_bias.numel() for m in real.modules()
               if isinstance(m, nn.MultiheadAttention))
    assert alg == pytest.approx(ref, rel=0.1)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        vit(name, image_size=8, patch_size=4, num_heads=3, hidden_dim=4)
    with pytest.raises(ValueError, match="expected 8x8 images"):
        model(torch.randn(1, 3, 4, 4))
