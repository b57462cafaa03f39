"""Model builders: ResNet and Transformer LM per algebra, width matching, conversion of real models."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from runtime import counting, load_algebra
from runtime.layers import AlgebraConv2d, AlgebraLinear
from runtime.layers.lift import AlgebraLift, AlgebraReadout
from runtime.layers.norm import AlgebraBatchNorm2d, AlgebraLayerNorm
from runtime.models import (AlgebraSelfAttention, TransformerLM, convert, macs_per_pair, match_model,
                            matched_width, matched_widths, resnet)

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O", "RandH", "RandM4R"]


# Small models: one thread is faster than two on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def train(model, loss_fn, steps, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


CONFIGS = {  # vary block, stem and norm across algebras to cover them all
    "R": ("basic", "cifar", "component"), "C": ("basic", "imagenet", "whitening"),
    "H": ("bottleneck", "cifar", "norm"), "Dual": ("basic", "cifar", "whitening"),
    "Cross3": ("basic", "cifar", "component"), "M2R": ("bottleneck", "imagenet", "component"),
    "M3R": ("basic", "cifar", "norm"), "M4R": ("basic", "cifar", "component"),
    "M2C": ("basic", "cifar", "component"), "O": ("basic", "cifar", "whitening"),
    "RandH": ("bottleneck", "cifar", "component"), "RandM4R": ("basic", "cifar", "whitening"),
}


@pytest.mark.parametrize("name", ALGEBRAS)
def test_resnet_trains_on_random_data(name):
    block, stem, norm = CONFIGS[name]
    torch.manual_seed(0)
    model = resnet(name, block, layers=(1, 1), widths=(3, 4), stem=stem, num_classes=4, norm=norm)
    x = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 4, (16,))
    losses = train(model, lambda: F.cross_entropy(model(x), y), 8, 1e-2)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 6, losses
    model.eval()
    assert model(x[:2]).shape == (2, 4)


@pytest.mark.parametrize("name", ALGEBRAS)
def test_transformer_lm_trains_on_random_data(name):
    torch.manual_seed(0)
    lm = TransformerLM(32, d_model=4, n_layers=1, n_heads=2, max_len=16, algebra=name)
    tokens = torch.randint(0, 32, (8, 16))
    losses = train(lm, lambda: lm.loss(tokens), 8, 3e-3)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.97 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 6, losses
    assert lm(tokens).shape == (8, 16, 32)


def test_transformer_is_causal_and_uses_algebra_layers():
    torch.manual_seed(0)
    lm = TransformerLM(20, d_model=4, n_layers=2, n_heads=2, max_len=10, algebra="H", dropout=0.1)
    lm.eval()
    a = torch.randint(0, 20, (1, 10))
    b = a.clone()
    b[0, 6:] = (b[0, 6:] + 1) % 20
    la, lb = lm(a), lm(b)
    assert torch.allclose(la[0, :6], lb[0, :6], atol=1e-5)
    assert not torch.allclose(la[0, 6:], lb[0, 6:])
    blk = lm.blocks[0]
    for lin in (blk.attn.q, blk.attn.k, blk.attn.v, blk.attn.o, blk.mlp.fc1, blk.mlp.fc2):
        assert isinstance(lin, AlgebraLinear) and lin.weight.shape[-1] == 4
    with pytest.raises(ValueError):
        lm(torch.randint(0, 20, (1, 11)))


def test_attention_logits_are_real_inner_products_over_all_components():
    name, dm, H = "C", 4, 2
    d = 2
    attn = AlgebraSelfAttention(dm, H, algebra=name)
    x = torch.randn(2, 5, dm * d)
    q, k, v = attn.q(x), attn.k(x), attn.v(x)
    hd = dm // H * d
    out = []
    for h in range(H):
        sl = slice(h * hd, (h + 1) * hd)                     # whole elements of head h
        logits = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd)
        logits = logits.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
        out.append(torch.softmax(logits, -1) @ v[..., sl])
    expect = attn.o(torch.cat(out, -1))
    assert torch.allclose(attn(x), expect, atol=1e-5)


# ---- width matching --------------------------------------------------------------------------------

def test_width_table_matches_reference():
    # docs/design.md, "Width matching": N/C at equal parameters and at equal (naive) MACs
    params = {"R": 1, "C": .707, "Dual": .707, "Cross3": .577, "H": .5, "M2R": .5, "M2C": .354, "M3R": .333,
              "M4R": .25, "O": .354, "RandH": .5, "RandM4R": .25}
    # the random controls' naive products take one multiplication per basis pair (i, j) with a non-zero product:
    # 10 for RandH's 16 constants, 59 for RandM4R's 64 (tests/test_random_control.py)
    macs = {"R": 1, "C": .5, "Dual": .577, "Cross3": .408, "H": .25, "M2R": .354, "M2C": .177, "M3R": .192,
            "M4R": .125, "O": .125, "RandH": .316, "RandM4R": .130}
    C = 10_000
    for name in ALGEBRAS:
        assert matched_width(C, name, "params") / C == pytest.approx(params[name], abs=1e-3)
        assert matched_width(C, name, "macs") / C == pytest.approx(macs[name], abs=1e-3)
    assert macs_per_pair("M3R", "fold") == 27 and macs_per_pair("M2C", "fold") == 32
    assert macs_per_pair("H", "bilinear") == load_algebra("H").rank and macs_per_pair("H", "block") == 16
    assert matched_width(64, "H", "width") == 16 and matched_width(64, "H", None) == 64
    assert matched_widths((64, 128), "H", "params", multiple_of=4) == (32, 64)
    with pytest.raises(ValueError):
        matched_width(64, "H", "flops")


@pytest.mark.parametrize("name,match", [("H", "params"), ("M2R", "params"), ("M4R", "params"),
                                        ("C", "macs"), ("H", "macs"), ("M4R", "macs")])
def test_matched_layer_equals_real_layer(name, match):
    """Where C / sqrt(d) or C / sqrt(k) is an integer, the matched layer has exactly the real count."""
    C = 64
    real = counting.count(nn.Linear(C, C, bias=False), torch.randn(3, C))
    n = matched_width(C, name, match)
    d = load_algebra(name).dim
    alg = counting.count(AlgebraLinear(n, n, algebra=name, bias=False), torch.randn(3, n * d))
    if match == "params":
        assert alg.params == real.params
    else:
        assert alg.total_macs("naive") == real.total_macs("naive")


def test_match_model_resnet_and_transformer():
    """match_model picks the width whose model is closest to the real baseline (neighbours are worse)."""
    x = torch.randn(1, 3, 8, 8)
    baseline = resnet("R", widths=(16, 32), layers=(1, 1))
    build = lambda w: resnet("H", widths=(w, 2 * w), layers=(1, 1))
    for match in ("params", "macs"):
        if match == "params":
            measure = lambda m: counting.count(m).params
        else:
            measure = lambda m: counting.count(m, x).total_macs("naive")
        target = measure(baseline)
        w, model = match_model(build, baseline, match, example_input=x, candidates=range(1, 33))
        got = measure(model)
        for other in (w - 1, w + 1):
            assert abs(got - target) <= abs(measure(build(other)) - target)
        assert abs(got - target) / target < 0.25
    # the closed form agrees with the search for the bulk of the network
    assert match_model(build, baseline, "params", candidates=range(1, 33))[0] in (7, 8, 9)
    tokens = torch.randint(0, 50, (2, 12))
    real_lm = TransformerLM(50, d_model=32, n_layers=1, n_heads=2, max_len=16)
    w, lm = match_model(lambda w: TransformerLM(50, d_model=w, n_layers=1, n_heads=2, max_len=16, algebra="C"),
                        real_lm, "macs", example_input=tokens, method="bilinear", candidates=range(2, 65, 2))
    target = counting.count(real_lm, tokens).total_macs("bilinear")
    got = counting.count(lm, tokens).total_macs("bilinear")
    assert w % 2 == 0 and abs(got - target) / target < 0.2
    with pytest.raises(ValueError):
        match_model(build, baseline, "macs")


# ---- convert --------------------------------------------------------------------------------------

class RealCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16, 32)
        self.ln = nn.LayerNorm(32)
        self.fc2 = nn.Linear(32, 5)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)) + h)              # residual add must still line up
        h = self.pool(h).mean(dim=(2, 3))
        return self.fc2(F.relu(self.ln(self.fc1(h))))


@pytest.mark.parametrize("name,match", [("H", "params"), ("M2R", "macs"), ("C", "width"), ("Dual", None)])
def test_convert_real_cnn(name, match):
    torch.manual_seed(0)
    real = RealCNN()
    model = convert(real, name, match=match)
    assert isinstance(real.conv2, nn.Conv2d)                 # the original is untouched
    A = load_algebra(name)
    n16, n32 = matched_width(16, A, match), matched_width(32, A, match)
    assert isinstance(model.conv1, nn.Sequential) and isinstance(model.conv1[0], AlgebraLift)
    assert isinstance(model.conv1[1], AlgebraConv2d) and model.conv1[1].weight.shape[:2] == (n16, 3)
    assert isinstance(model.conv2, AlgebraConv2d) and model.conv2.weight.shape[:2] == (n16, n16)
    assert isinstance(model.bn2, AlgebraBatchNorm2d) and model.bn2.num_features == n16
    assert isinstance(model.fc1, AlgebraLinear) and model.fc1.weight.shape == (n32, n16, A.dim)
    assert isinstance(model.ln, AlgebraLayerNorm)
    assert isinstance(model.fc2, AlgebraReadout) and model.fc2.out_features == 5
    x = torch.randn(8, 3, 8, 8)
    y = torch.randint(0, 5, (8,))
    losses = train(model, lambda: F.cross_entropy(model(x), y), 6, 1e-2)
    assert losses[-1] < losses[0]


def test_convert_params_roughly_match_and_mlp():
    real = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    model = convert(real, "H", match="params")
    inner_real = 64 * 64 + 64
    inner = model[2]
    assert isinstance(inner, AlgebraLinear) and inner.weight.shape == (32, 32, 4)
    assert inner.weight.numel() == 64 * 64 and inner.bias.numel() == 32 * 4
    assert model(torch.randn(5, 10)).shape == (5, 3)
    with pytest.raises(ValueError):
        convert(nn.Sequential(nn.ReLU()), "H")


def test_models_deepcopy_pickle_and_pruned_copies():
    """Modules hold an Algebra (with its generated module): copies and pickles must still work."""
    import copy
    import io

    from runtime import sparsity as sp

    torch.manual_seed(0)
    net = resnet("H", "basic", layers=(1,), widths=(2,), norm="whitening", num_classes=3, stem="imagenet")
    lm = TransformerLM(16, d_model=4, n_layers=1, n_heads=2, max_len=8, algebra="Dual", activation="modrelu")
    x, t = torch.randn(2, 3, 8, 8), torch.randint(0, 16, (2, 8))
    net.eval()
    for model, inp in ((net, x), (lm, t)):
        twin = copy.deepcopy(model)
        assert twin.algebra is model.algebra                     # shared, reloaded from the registry
        assert torch.allclose(twin(inp), model(inp), atol=1e-6)
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        again = torch.load(buf, weights_only=False)
        assert torch.allclose(again(inp), model(inp), atol=1e-6)
    sp.prune_elements_(net, 0.5)
    twin = copy.deepcopy(net)                                    # parametrized layers copy too
    assert torch.allclose(twin(x), net(x), atol=1e-6)
    assert sp.sparsity_report(twin)[0].pruned == sp.sparsity_report(net)[0].pruned
    assert counting.count(twin, x)["stem.0"].kind == "AlgebraConv2d"


def test_convert_keeps_dtype():
    from runtime.models import convert

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    converted = convert(model, "H", match="params")
    assert all(p.dtype == torch.float64 for p in converted.parameters())
    assert converted(torch.randn(3, 8, dtype=torch.float64)).shape == (3, 4)


class RealUNet(nn.Module):
    """Down with a strided conv, group / instance norms, up with a transposed conv, skip concatenation."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        h = F.relu(self.gn(self.down(x)))
        h = F.relu(self.inorm(self.mid(h))) + h
        return self.head(F.relu(self.up(h)))


class RealSeq(nn.Module):
    def __init__(self, cell: bool = False):
        super().__init__()
        self.cell = cell
        self.gru = nn.GRU(5, 8, batch_first=True) if not cell else nn.GRUCell(5, 8)
        self.lstm = nn.LSTM(8, 6, num_layers=2, bidirectional=True, dropout=0.1)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        if self.cell:
            h = torch.stack([self.gru(x[:, t]) for t in range(x.shape[1])], 1)
        else:
            h, _ = self.gru(x)
        out, (hn, cn) = self.lstm(h.transpose(0, 1))
        return self.fc(out[-1])


@pytest.mark.parametrize("name", ["C", "H"])
def test_convert_transposed_convs_norms_and_recurrent_layers(name):
    from runtime.layers import (AlgebraConvTranspose2d, AlgebraGroupNorm, AlgebraGRU, AlgebraGRUCell,
                                AlgebraInstanceNorm2d, AlgebraLSTM)
    from runtime.models.convert import LiftedRecurrent

    torch.manual_seed(0)
    A = load_algebra(name)
    n8 = matched_width(8, A, "width")
    unet = convert(RealUNet(), name, match="width", norm="norm")
    assert isinstance(unet.up, AlgebraConvTranspose2d) and unet.up.weight.shape[:2] == (n8, n8)
    assert unet.up.output_padding == (1, 1) and unet.up.stride == (2, 2)
    assert isinstance(unet.gn, AlgebraGroupNorm) and (unet.gn.num_groups, unet.gn.num_channels) == (2, n8)
    assert isinstance(unet.inorm, AlgebraInstanceNorm2d) and unet.inorm.affine and unet.inorm.mode == "norm"
    x = torch.randn(4, 3, 8, 8)
    y = torch.randn(4, 2, 8, 8)
    losses = train(unet, lambda: F.mse_loss(unet(x), y), 6, 1e-2)
    assert losses[-1] < losses[0]
    for cell in (False, True):
        seq = convert(RealSeq(cell), name, match="params")
        assert isinstance(seq.gru, LiftedRecurrent) and isinstance(seq.gru.lift, AlgebraLift)
        assert isinstance(seq.gru.rnn, AlgebraGRUCell if cell else AlgebraGRU)
        assert seq.gru.rnn.input_size == 5 and seq.gru.rnn.hidden_size == matched_width(8, A, "params")
        if not cell:
            assert seq.gru.rnn.batch_first
        lstm = seq.lstm
        assert isinstance(lstm, AlgebraLSTM) and lstm.num_layers == 2 and lstm.bidirectional
        assert lstm.dropout == 0.1 and lstm.hidden_size == matched_width(6, A, "params")
        assert isinstance(seq.fc, AlgebraReadout)
        xs, t = torch.randn(4, 7, 5), torch.randint(0, 3, (4,))
        losses = train(seq, lambda: F.cross_entropy(seq(xs), t), 6, 1e-2)
        assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="cannot be the last converted layer"):
        convert(nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4)), name)
    with pytest.raises(ValueError, match="proj_size"):
        convert(nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4, proj_size=2), nn.Linear(2, 2)), name)
    with pytest.raises(ValueError, match=r"GroupNorm\(4, 12\) becomes .* elements, which 4 groups do not divide"):
        convert(nn.Sequential(nn.Conv2d(3, 12, 3), nn.GroupNorm(4, 12), nn.Conv2d(12, 2, 1)), name, match="width")
