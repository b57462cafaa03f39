"""Zero-size inputs behave as in torch: every layer and method, given an empty batch, returns an empty output of
the shape torch's own layer gives (and an empty backward); a sequence with no time steps is refused like torch's
recurrent layers refuse it.  Regression for reshapes with -1 on empty tensors ("cannot reshape tensor of 0
elements").
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import runtime.layers as L
from runtime import sparsity as sp
from runtime import load_algebra
from runtime.methods import complex as complex_method
from runtime.methods.table import METHODS

ALGEBRAS = ["H", "M2C"]          # M2C folds (m = 2)


def check(ours: torch.Tensor, theirs: torch.Tensor, x: torch.Tensor):
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    if x.requires_grad:
        (ours.sum() if ours.numel() == 0 else ours.sum() * 0).backward()
        assert x.grad is None or x.grad.shape == x.shape


def inputs(*shape):
    return torch.randn(*shape, requires_grad=True)


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inference", [False, True], ids=["train", "inference"])
def test_linear_and_convolutions_with_an_empty_batch(name, method, inference):
    if method == "complex" and not complex_method.applies(load_algebra(name)):
        pytest.skip(f"the complex method does not apply to {name} (it refuses it by name)")
    d = 4 if name == "H" else 8
    cases = [
        (L.AlgebraLinear(2, 3, name, method=method), nn.Linear(2 * d, 3 * d), (0, 2 * d)),
        (L.AlgebraLinear(2, 3, name, method=method), nn.Linear(2 * d, 3 * d), (5, 0, 2 * d)),
        (L.AlgebraConv1d(2, 3, 3, algebra=name, method=method), nn.Conv1d(2 * d, 3 * d, 3), (0, 2 * d, 6)),
        (L.AlgebraConv2d(2, 3, 3, algebra=name, method=method, padding=1), nn.Conv2d(2 * d, 3 * d, 3, padding=1),
         (0, 2 * d, 5, 5)),
        (L.AlgebraConv3d(2, 3, 2, algebra=name, method=method), nn.Conv3d(2 * d, 3 * d, 2), (0, 2 * d, 3, 3, 3)),
        (L.AlgebraConvTranspose1d(2, 3, 3, algebra=name, method=method), nn.ConvTranspose1d(2 * d, 3 * d, 3),
         (0, 2 * d, 4)),
        (L.AlgebraConvTranspose2d(2, 3, 3, algebra=name, method=method, stride=2),
         nn.ConvTranspose2d(2 * d, 3 * d, 3, stride=2), (0, 2 * d, 4, 4)),
        (L.AlgebraConvTranspose3d(2, 3, 2, algebra=name, method=method), nn.ConvTranspose3d(2 * d, 3 * d, 2),
         (0, 2 * d, 2, 2, 2)),
    ]
    for ours, theirs, shape in cases:
        x = torch.randn(*shape, requires_grad=not inference)
        if inference:
            with torch.inference_mode():
                check(ours(x), theirs(x), x)
        else:
            check(ours(x), theirs(x), x)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_layers_with_an_empty_batch(method, kind):
    name, d = ("C", 2) if method == "complex" else ("H", 4)        # (complex applies to C, not to H)
    for batch_first in (True, False):
        for bidirectional in (False, True):
            ours = getattr(L, f"Algebra{kind}")(2, 3, algebra=name, batch_first=batch_first, method=method,
                                                 bidirectional=bidirectional, num_layers=2)
            theirs = getattr(nn, kind)(2 * d, 3 * d, batch_first=batch_first, bidirectional=bidirectional,
                                       num_layers=2)
            x = inputs(0, 4, 2 * d) if batch_first else inputs(4, 0, 2 * d)
            (y, h), (ty, th) = ours(x), theirs(x)
            check(y, ty, x)
            h, th = (h[0], th[0]) if kind == "LSTM" else (h, th)
            assert h.shape == th.shape
        cell = getattr(L, f"Algebra{kind}Cell")(2, 3, algebra=name, method=method)
        out = cell(inputs(0, 2 * d))
        out = out[0] if kind == "LSTM" else out
        assert out.shape == (0, 3 * d)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_sequence_with_no_time_steps_is_refused_like_torch(kind):
    with pytest.raises(RuntimeError, match="sequence length"):
        getattr(nn, kind)(8, 12, batch_first=True)(torch.randn(2, 0, 8))
    with pytest.raises(ValueError, match="no time steps"):
        getattr(L, f"Algebra{kind}")(2, 3, algebra="H", batch_first=True)(torch.randn(2, 0, 8))


def test_other_layers_with_an_empty_batch():
    x1, x2, x3 = inputs(0, 8), inputs(0, 8, 5, 5), inputs(0, 8, 5)
    pairs = [
        (L.AlgebraBatchNorm1d(2, algebra="H"), nn.BatchNorm1d(8), x1),
        (L.AlgebraBatchNorm2d(2, algebra="H"), nn.BatchNorm2d(8), x2),
        (L.AlgebraLayerNorm(2, algebra="H"), nn.LayerNorm(8), x1),
        (L.AlgebraGroupNorm(1, 2, algebra="H"), nn.GroupNorm(1, 8), x2),
        (L.AlgebraInstanceNorm1d(2, algebra="H"), nn.InstanceNorm1d(8), x3),
        (L.AlgebraMaxPool2d(2, algebra="H"), nn.MaxPool2d(2), x2),
        (L.AlgebraAvgPool2d(2, algebra="H"), nn.AvgPool2d(2), x2),
        (L.AlgebraAdaptiveMaxPool2d(2, algebra="H"), nn.AdaptiveMaxPool2d(2), x2),
        (L.AlgebraAdaptiveAvgPool1d(2, algebra="H"), nn.AdaptiveAvgPool1d(2), x3),
        (L.AlgebraMaxPool1d(2, algebra="H"), nn.MaxPool1d(2), x3),
        (L.ModReLU(2, algebra="H"), nn.ReLU(), x1),
        (L.NormGatedActivation(2, algebra="H"), nn.ReLU(), x1),
        (L.SplitActivation("relu", algebra="H"), nn.ReLU(), x1),
        (L.AlgebraDropout(0.5, algebra="H"), nn.Dropout(0.5), x1),
        (L.AlgebraLift(8, algebra="H"), nn.Linear(8, 32), x1),
        (L.AlgebraReadout(2, 3, algebra="H"), nn.Linear(8, 3), x1),
    ]
    for ours, theirs, x in pairs:
        x.grad = None
        check(ours(x), theirs(x), x)


def test_block_sparse_layers_with_an_empty_batch():
    lin = L.AlgebraLinear(3, 2, "H")
    conv = L.AlgebraConv2d(2, 3, 3, algebra="H")
    sp.prune_elements_(lin, 0.5)
    sp.prune_elements_(conv, 0.5)
    slin, sconv = sp.to_block_sparse(lin), sp.to_block_sparse(conv)
    with torch.inference_mode():
        assert slin(torch.randn(0, 12)).shape == (0, 8)
        assert sconv(torch.randn(0, 8, 5, 5)).shape == (0, 12, 3, 3)


@pytest.mark.parametrize("fn", ["to_block_sparse", "prune", "set_mask_"])
def test_sparsity_tools_refuse_plain_torch_layers(fn):
    layer = nn.Linear(3, 3)
    call = {"to_block_sparse": lambda: sp.to_block_sparse(layer),
            "prune": lambda: sp.prune_elements_([layer], 0.5),
            "set_mask_": lambda: sp.set_mask_(layer, torch.ones(3, dtype=torch.bool))}[fn]
    with pytest.raises(TypeError, match="Linear is not an algebra layer"):
        call()


def test_models_with_an_empty_batch_and_the_lm_loss_needs_two_tokens():
    from runtime.models import TransformerLM, resnet

    lm = TransformerLM(50, 4, 2, 2, algebra="H", max_len=16)
    assert lm(torch.randint(0, 50, (0, 5))).shape == (0, 5, 50)
    assert lm(torch.randint(0, 50, (2, 0))).shape == (2, 0, 50)
    for shape in ((3, 1), (0, 5), (3, 0)):
        with pytest.raises(ValueError, match="at least 2 tokens"):
            lm.loss(torch.randint(0, 50, shape))
    with pytest.raises(ValueError, match="int64"):
        lm.loss(torch.rand(2, 5))
    assert torch.isfinite(lm.loss(torch.randint(0, 50, (1, 2))))
    net = resnet("H", widths=(4, 8, 8, 8), stem="cifar")
    assert net(torch.randn(0, 3, 32, 32)).shape == (0, 10)
