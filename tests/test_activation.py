"""Split and norm-gated activations, element dropout, element pooling, lift and read-out."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import load_algebra
from runtime.layers.activation import ModReLU, NormGatedActivation, SplitActivation
from runtime.layers.dropout import AlgebraDropout
from runtime.layers.lift import AlgebraLift, AlgebraReadout
from runtime.layers.pool import (AlgebraAdaptiveAvgPool2d, AlgebraAdaptiveMaxPool2d, AlgebraAvgPool2d,
                                 AlgebraMaxPool1d, AlgebraMaxPool2d, AlgebraMaxPool3d)

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O", "RandH", "RandM4R"]


def test_split_activation_is_componentwise():
    x = torch.randn(3, 8, 2, 2)
    assert torch.equal(SplitActivation("relu", algebra="H")(x), F.relu(x))
    assert torch.equal(SplitActivation(torch.tanh)(x), torch.tanh(x))
    prelu = torch.nn.PReLU()
    act = SplitActivation(prelu, algebra="C")
    assert list(act.parameters()) == list(prelu.parameters())
    with pytest.raises(ValueError):
        SplitActivation("nope")


@pytest.mark.parametrize("name", ALGEBRAS)
def test_modrelu_formula(name):
    d = load_algebra(name).dim
    C = 3
    act = ModReLU(C, algebra=name, dim=1)
    with torch.no_grad():
        act.bias.copy_(torch.tensor([-0.5, 0.0, 0.7]))
    x = torch.randn(5, C * d, 4)
    y = act(x)
    xs = x.unflatten(1, (C, d))
    n = xs.norm(dim=2, keepdim=True)
    expect = xs * F.relu(n + act.bias.view(1, C, 1, 1)) / n
    assert torch.allclose(y, expect.flatten(1, 2), atol=1e-6)
    # direction kept, zero elements stay zero with finite gradients
    z = torch.zeros(2, C * d, 1, requires_grad=True)
    out = act(z)
    out.sum().backward()
    assert torch.equal(out, torch.zeros_like(out)) and torch.isfinite(z.grad).all()


def test_norm_gated_last_dim_and_gates():
    act = NormGatedActivation(4, algebra="C", gate="sigmoid", dim=-1)
    x = torch.randn(2, 3, 8)
    xs = x.unflatten(-1, (4, 2))
    n = xs.norm(dim=-1, keepdim=True)
    assert torch.allclose(act(x), (xs * torch.sigmoid(n) / n).flatten(-2), atol=1e-6)
    with pytest.raises(ValueError):
        act(torch.randn(2, 3, 6))


@pytest.mark.parametrize("name", ["C", "H", "M3R"])
def test_dropout_drops_whole_elements(name):
    d = load_algebra(name).dim
    torch.manual_seed(0)
    drop = AlgebraDropout(0.4, algebra=name)
    x = torch.randn(64, 16 * d, 3) + 5.0           # no zero components by chance
    y = drop(x).unflatten(1, (16, d))
    zero = y == 0
    assert torch.equal(zero.all(2), zero.any(2))     # an element is either fully dropped or fully kept
    kept = ~zero.any(2, keepdim=True)
    assert torch.allclose(y[kept.expand_as(y)], (x.unflatten(1, (16, d)) / 0.6)[kept.expand_as(y)])
    frac = zero.all(2).float().mean().item()
    assert 0.35 < frac < 0.45
    drop.eval()
    assert torch.equal(drop(x), x)
    last = AlgebraDropout(0.5, algebra=name, dim=-1)
    t = torch.randn(8, 10, 4 * d) + 5.0
    ys = last(t).unflatten(-1, (4, d))
    assert torch.equal((ys == 0).all(-1), (ys == 0).any(-1))
    assert torch.equal(AlgebraDropout(1.0, algebra=name)(x), torch.zeros_like(x))
    with pytest.raises(ValueError):
        AlgebraDropout(1.5, algebra=name)


@pytest.mark.parametrize("name", ["C", "H", "Dual"])
def test_max_pool_keeps_elements_whole(name):
    d = load_algebra(name).dim
    C = 3
    x = torch.randn(2, C * d, 6, 6)
    y = AlgebraMaxPool2d(2, algebra=name)(x)
    assert y.shape == (2, C * d, 3, 3)
    xs = x.unflatten(1, (C, d))
    ys = y.unflatten(1, (C, d))
    for n in range(2):
        for c in range(C):
            for i in range(3):
                for j in range(3):
                    win = xs[n, c, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(d, 4)
                    best = win.norm(dim=0).argmax()
                    assert torch.equal(ys[n, c, :, i, j], win[:, best])
    # gradients reach exactly the chosen elements
    x.requires_grad_(True)
    AlgebraMaxPool2d(2, algebra=name)(x).sum().backward()
    g = x.grad.unflatten(1, (C, d))
    assert torch.equal(g != 0, (g != 0).any(2, keepdim=True).expand_as(g))


def test_other_pools():
    x = torch.randn(2, 8, 5)
    assert AlgebraMaxPool1d(2, stride=1, padding=1, algebra="H")(x).shape == (2, 8, 6)
    assert AlgebraMaxPool3d(2, algebra="C")(torch.randn(1, 4, 4, 4, 4)).shape == (1, 4, 2, 2, 2)
    x2 = torch.randn(2, 8, 4, 4)
    y = AlgebraAdaptiveMaxPool2d(1, algebra="H")(x2).unflatten(1, (2, 4)).squeeze(-1).squeeze(-1)
    xs = x2.unflatten(1, (2, 4)).flatten(3)
    idx = xs.norm(dim=2).argmax(-1)
    assert torch.equal(y, xs.gather(3, idx[:, :, None, None].expand(2, 2, 4, 1)).squeeze(-1))
    assert torch.equal(AlgebraAvgPool2d(2, algebra="H")(x2), F.avg_pool2d(x2, 2))
    assert torch.equal(AlgebraAdaptiveAvgPool2d(1, algebra="H")(x2), F.adaptive_avg_pool2d(x2, 1))


@pytest.mark.parametrize("name", ALGEBRAS)
def test_lift_embed_uses_unit(name):
    A = load_algebra(name)
    d = A.dim
    x = torch.randn(2, 3, 4, 4)
    y = AlgebraLift(3, algebra=name)(x)
    assert y.shape == (2, 3 * d, 4, 4)
    u = torch.tensor(A.unit if A.unit is not None else [1.0] + [0.0] * (d - 1), dtype=torch.float32)
    assert torch.allclose(y.unflatten(1, (3, d)), x.unsqueeze(2) * u.view(1, 1, d, 1, 1))
    if A.unit is not None:
        # the lift is a ring embedding: lifted a * lifted b = lifted (a b)
        a, b = torch.randn(5, 1), torch.randn(5, 1)
        la, lb = AlgebraLift(1, algebra=name, dim=-1)(a), AlgebraLift(1, algebra=name, dim=-1)(b)
        assert torch.allclose(A.mul(la, lb), AlgebraLift(1, algebra=name, dim=-1)(a * b), atol=1e-6)


def test_lift_linear_and_readout_shapes_and_grads():
    lift = AlgebraLift(3, algebra="H", out_features=5, mode="linear")
    x = torch.randn(2, 3, 4, 4)
    y = lift(x)
    assert y.shape == (2, 20, 4, 4)
    ref = torch.einsum("of,nfhw->nohw", lift.weight, x) + lift.bias.view(1, -1, 1, 1)
    assert torch.allclose(y, ref, atol=1e-5)
    head = AlgebraReadout(5, 7, algebra="H")
    feats = y.mean(dim=(2, 3))
    out = head(feats)
    assert out.shape == (2, 7)
    assert torch.allclose(out, F.linear(feats, head.weight, head.bias))
    out.sum().backward()
    assert lift.weight.grad is not None
    normhead = AlgebraReadout(5, 7, algebra="H", mode="norm")
    n = feats.unflatten(1, (5, 4)).norm(dim=2)
    assert torch.allclose(normhead(feats), F.linear(n, normhead.weight, normhead.bias), atol=1e-5)
    with pytest.raises(ValueError):
        AlgebraLift(3, algebra="H", out_features=4)
    with pytest.raises(ValueError):
        head(torch.randn(2, 19))


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(["C", "H", "M2R", "Cross3"]), seed=st.integers(0, 1000))
def test_readout_norm_is_invariant_to_orthogonal_mixing(name, seed):
    """mode='norm' sees only element norms: rotating every element's components leaves it unchanged."""
    d = load_algebra(name).dim
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    head = AlgebraReadout(3, 2, algebra=name, mode="norm", dtype=torch.float64)
    x = torch.randn(4, 3, d, generator=g, dtype=torch.float64)
    assert torch.allclose(head(x.flatten(1)), head((x @ Q.T).flatten(1)), atol=1e-10)
