"""Counting: parameters, real multiply-adds per method, bytes; hand formulas and FlopCounterMode."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from runtime import counting, load_algebra
from runtime import sparsity as sp
from runtime.functional import force_method
from runtime.layers import AlgebraConv2d, AlgebraLinear
from runtime.models import TransformerLM, resnet

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "RandH", "RandM4R"]
# hand-derived (docs/design.md, "Built-in algebras"): non-zero structure constants and fold blocks
NAIVE_K = {"R": 1, "C": 4, "H": 16, "Dual": 3, "Cross3": 6, "M2R": 8, "M3R": 27, "M4R": 64, "M2C": 32}
FOLD_M = {"M2R": 2, "M3R": 3, "M4R": 4, "M2C": 2}


def naive_k(A) -> int:
    """The naive product's multiplications per element pair: hand-derived for the algebras above (each basis
    product is one signed basis element, so one per non-zero constant); for the random controls (a product may
    have several components) the basis pairs (i, j) with a non-zero product, read off the exact structure."""
    return NAIVE_K.get(A.name) or len({(i, j) for i, j, _, _ in A.structure_exact})


# Small models: one thread is faster than two on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def per_pair(name):
    A = load_algebra(name)
    d = A.dim
    return {"naive": naive_k(A), "block": d * d, "fold": d * d // FOLD_M.get(name, 1), "bilinear": A.rank}


def flop_macs(model, *inputs, method):
    """FlopCounterMode's multiply-adds (flops / 2) per module, on a warm forward (cached weight transforms).
    Attention runs on SDPA's math backend: FlopCounterMode has no formula for the fused CPU kernel."""
    model.eval()
    with torch.no_grad(), force_method(method), sdpa_kernel(SDPBackend.MATH):
        model(*inputs)
        with FlopCounterMode(display=False) as fc:
            model(*inputs)
    return fc


def glob(fc):
    return {str(k): v // 2 for k, v in fc.get_flop_counts()["Global"].items()}


# ---- hand formulas: ResNet ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ALGEBRAS)
def test_resnet_counts_equal_hand_formulas(name):
    d = load_algebra(name).dim
    N, w0, w1, classes = 2, 3, 5, 7
    model = resnet(name, "basic", layers=(1, 1), widths=(w0, w1), stem="cifar", num_classes=classes)
    x = torch.randn(N, 3, 8, 8)
    rep = counting.count(model, x)
    pairs = (N * 64 * w0 * 3 * 9                                  # stem 3 -> w0, 3x3 on 8x8
             + 2 * N * 64 * w0 * w0 * 9                           # stage 1: two 3x3 w0 -> w0
             + N * 16 * w1 * w0 * 9 + N * 16 * w1 * w1 * 9        # stage 2: stride 2 to 4x4
             + N * 16 * w1 * w0)                                  # 1x1 strided shortcut
    head = N * w1 * d * classes
    for method, c in per_pair(name).items():
        assert rep.total_macs(method) == c * pairs + head, method
    params = (d * (3 * w0 * 9 + 2 * w0 * w0 * 9 + w1 * w0 * 9 + w1 * w1 * 9 + w1 * w0)     # convs, no bias
              + 2 * d * (w0 + 2 * w0 + 3 * w1)                                             # BN weight + bias
              + classes * w1 * d + classes)                                                # read-out
    assert rep.params == params == sum(p.numel() for p in model.parameters())
    assert rep.weight_bytes == 4 * params
    assert counting.count(model, dtype=torch.bfloat16).weight_bytes == 2 * params
    assert rep["stages.1.0.shortcut.0"].macs["block"] == N * 16 * w1 * w0 * d * d


# ---- hand formulas: Transformer -----------------------------------------------------------------

@pytest.mark.parametrize("name", ALGEBRAS)
def test_transformer_counts_equal_hand_formulas(name):
    d = load_algebra(name).dim
    V, dm, dff, L, B, T, maxlen = 11, 4, 8, 2, 2, 6, 8
    lm = TransformerLM(V, d_model=dm, n_layers=L, n_heads=2, d_ff=dff, max_len=maxlen, algebra=name)
    tokens = torch.randint(0, V, (B, T))
    rep = counting.count(lm, tokens)
    P = B * T
    pairs = L * P * (4 * dm * dm + 2 * dm * dff)
    attn = L * 2 * B * T * T * dm * d                      # QK^T and AV over all components
    head = P * dm * d * V
    for method, c in per_pair(name).items():
        assert rep.total_macs(method) == c * pairs + attn + head, method
    params = (V * dm * d + maxlen * dm * d
              + L * (4 * (dm * dm * d + dm * d) + dm * dff * d + dff * d + dff * dm * d + dm * d + 4 * dm * d)
              + 2 * dm * d + V * dm * d)
    assert rep.params == params == sum(p.numel() for p in lm.parameters())


# ---- FlopCounterMode on the torch paths -----------------------------------------------------------

@pytest.mark.parametrize("name", ["R", "C", "H", "Dual", "M2R", "M3R", "M2C"])
@pytest.mark.parametrize("method", ["block", "fold"])
def test_resnet_block_and_fold_agree_with_flop_counter(name, method):
    model = resnet(name, "basic", layers=(1, 1), widths=(3, 4), num_classes=5)
    x = torch.randn(2, 3, 8, 8)
    rep = counting.count(model, x)
    fc = flop_macs(model, x, method=method)
    assert fc.get_total_flops() // 2 == rep.total_macs(method)


@pytest.mark.parametrize("name", ["C", "H", "Cross3", "M2R", "M4R"])
def test_bilinear_agrees_with_flop_counter_per_layer(name):
    model = resnet(name, "bottleneck", layers=(1,), widths=(2,), num_classes=3)
    x = torch.randn(2, 3, 6, 6)
    rep = counting.count(model, x)
    fc = flop_macs(model, x, method="bilinear")
    counts = fc.get_flop_counts()
    root = type(model).__name__
    checked = 0
    for lc in rep.layers:
        if lc.kind.startswith("AlgebraConv"):
            ops = {str(k): v // 2 for k, v in counts[f"{root}.{lc.name}"].items()}
            assert ops["aten.convolution"] == lc.macs["bilinear"]      # the r real convolutions
            assert ops["aten.bmm"] == lc.map_macs                       # V and W maps as dense matmuls
            checked += 1
    assert checked == 5
    assert sum(v for k, v in glob(fc).items()) == rep.total_macs("bilinear") + sum(lc.map_macs for lc in rep.layers)


@pytest.mark.parametrize("name", ["C", "H", "Dual", "M3R"])
@pytest.mark.parametrize("method", ["block", "fold", "bilinear"])
def test_transformer_agrees_with_flop_counter(name, method):
    lm = TransformerLM(13, d_model=4, n_layers=1, n_heads=2, d_ff=6, max_len=8, algebra=name)
    tokens = torch.randint(0, 13, (2, 7))
    rep = counting.count(lm, tokens)
    fc = flop_macs(lm, tokens, method=method)
    extra = sum(lc.map_macs for lc in rep.layers) if method == "bilinear" else 0
    assert fc.get_total_flops() // 2 == rep.total_macs(method) + extra
    if method == "bilinear":
        q = {str(k): v // 2 for k, v in fc.get_flop_counts()["TransformerLM.blocks.0.attn.q"].items()}
        assert q["aten.bmm"] == rep["blocks.0.attn.q"].macs["bilinear"] == 2 * 7 * 4 * 4 * load_algebra(name).rank


def test_real_models_agree_with_flop_counter():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    x = torch.randn(2, 3, 9, 9)
    rep = counting.count(model, x)
    with FlopCounterMode(display=False) as fc:
        model(x)
    assert fc.get_total_flops() // 2 == rep.total_macs("naive") == rep.total_macs("bilinear")
    assert rep.params == sum(p.numel() for p in model.parameters())


def test_bilinear_additions_and_pruned_counts():
    name = "H"
    A = load_algebra(name)
    adds = A.scheme.additions["optimised"]
    layer = AlgebraLinear(6, 5, algebra=name)
    rep = counting.count(layer, torch.randn(3, 24))
    lc = rep.layers[0]
    assert lc.additions == {"activation": 3 * 6 * adds["activation"], "post": 3 * 5 * adds["post"],
                            "weight": 30 * adds["weight"]}
    assert lc.macs == {"naive": 90 * 16, "block": 90 * 16, "fold": 90 * 16, "bilinear": 90 * A.rank}
    sp.prune_elements_(layer, 0.6)
    rep = counting.count(layer, torch.randn(3, 24))
    assert rep.params == 30 * 4 + 20 and rep.nonzero_params == 12 * 4 + 20
    fast = sp.to_block_sparse(layer, 0.0)
    rep_sparse = counting.count(fast, torch.randn(3, 24))
    assert rep_sparse.total_macs("naive") == 3 * 12 * 16      # only stored elements are multiplied
    conv = AlgebraConv2d(2, 3, 3, algebra=name, padding=1)
    sp.prune_elements_(conv, 0.5)
    rep_c = counting.count(sp.to_block_sparse(conv), torch.randn(1, 8, 4, 4))
    assert rep_c.total_macs("block") == 16 * 27 * 16
    table = counting.count(layer, torch.randn(3, 24)).table()
    assert "MACs bilinear" in table and "total" in table


def test_norm_weights_are_not_layers_and_counting_has_no_side_effects():
    """A whitening norm's (C, d, d) weight looks like a layer weight; it must not be counted, pruned or
    re-initialised as one, and counting must not update running statistics."""
    x = torch.randn(2, 3, 8, 8)
    comp = resnet("H", "basic", layers=(1,), widths=(3,), norm="component", num_classes=4)
    white = resnet("H", "basic", layers=(1,), widths=(3,), norm="whitening", num_classes=4)
    white.train()
    rc, rw = counting.count(comp, x), counting.count(white, x)
    assert white.training and white.stem[1].training
    assert int(white.stem[1].num_batches_tracked) == 0
    for m in ("naive", "block", "fold", "bilinear"):
        assert rc.total_macs(m) == rw.total_macs(m)
    n_bn = 3                                                   # stem, bn1, bn2: 3 elements each
    assert rw.params - rc.params == n_bn * 3 * (16 - 4)        # (C, d, d) instead of (C, d) weights
    names = [n for n, _ in sp.prunable_layers(white)]
    assert names == ["stem.0", "stages.0.0.conv1", "stages.0.0.conv2"]


# ---- transposed convolutions, recurrent layers, group norm ---------------------------------------

@pytest.mark.parametrize("name", ["C", "H", "M2R", "M2C"])
def test_transposed_conv_recurrent_and_group_norm_counts(name):
    from runtime.layers import (AlgebraConvTranspose2d, AlgebraGroupNorm, AlgebraGRUCell, AlgebraLSTM)

    A = load_algebra(name)
    d = A.dim
    N, cin, cout, g = 2, 4, 6, 2
    up = nn.Sequential(AlgebraConvTranspose2d(cin, cout, 3, name, stride=2, padding=1, output_padding=1, groups=g),
                       AlgebraGroupNorm(3, cout, name))
    x = torch.randn(N, cin * d, 3, 5)
    rep = counting.count(up, x)
    pairs = N * 3 * 5 * cin * (cout // g) * 9                 # every input position meets its group's weights
    for method, c in per_pair(name).items():
        assert rep.total_macs(method) == c * pairs, method
    assert rep.params == cin * (cout // g) * 9 * d + cout * d + 2 * cout * d
    adds = A.scheme.additions["optimised"]
    assert rep["0"].additions == {"activation": N * 15 * cin * adds["activation"],
                                  "post": N * 6 * 10 * cout * adds["post"],
                                  "weight": cin * (cout // g) * 9 * adds["weight"]}
    L, I, H = 5, 3, 4
    lstm = AlgebraLSTM(I, H, name, num_layers=2, bidirectional=True)
    rep = counting.count(lstm, torch.randn(L, N, I * d))
    pairs = 2 * L * N * 4 * H * (I + H) + 2 * L * N * 4 * H * (2 * H + H)     # layer 0 and 1, both directions
    for method, c in per_pair(name).items():
        assert rep.total_macs(method) == c * pairs, method
    assert rep.params == 2 * (4 * H * (I + H) * d + 2 * 4 * H * d) + 2 * (4 * H * (2 * H + H) * d + 2 * 4 * H * d)
    cell = AlgebraGRUCell(I, H, name, bias=False)
    assert counting.count(cell, torch.randn(N, I * d)).total_macs("block") == N * 3 * H * (I + H) * d * d
    for model, inp in ((up, x), (lstm, torch.randn(L, N, I * d))):
        for method in ("block", "fold"):
            fc = flop_macs(model, inp, method=method)
            assert fc.get_total_flops() // 2 == counting.count(model, inp).total_macs(method), (model, method)
