"""Polar initialisation against the variances the papers derive (Trabelsi et al. for C; Parcollet et al. /
Gaudet and Maida for H): fixed seed, large samples, generous tolerances."""
from __future__ import annotations

import math

import pytest
import torch

from runtime import init, load_algebra
from runtime.layers import AlgebraLinear

pytestmark = pytest.mark.usefixtures("one_thread")


def sample(name, out=400, fan_in=250, scheme="he"):
    w = torch.empty(out, fan_in, load_algebra(name).dim, dtype=torch.float64)
    return init.polar_(w, name, scheme=scheme, generator=torch.Generator().manual_seed(0))


def test_complex_polar_is_trabelsi():
    """He: Var(W) = E|W|^2 = 2 sigma^2 = 2 / fan_in, |W| Rayleigh(sigma), phase uniform; Glorot: 2 / (in + out)."""
    fan_in = 250
    w = sample("C", fan_in=fan_in)
    sigma = 1 / math.sqrt(fan_in)
    mod, phase = w.norm(dim=-1), torch.atan2(w[..., 1], w[..., 0])
    assert w.square().sum(-1).mean() == pytest.approx(2 * sigma ** 2, rel=0.02)
    assert mod.mean() == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.02)            # Rayleigh mean
    assert torch.histc(phase, 8, -math.pi, math.pi).div(phase.numel()).sub(1 / 8).abs().max() < 0.01
    assert w.mean(dim=(0, 1)).abs().max() < 0.02 * sigma
    g = sample("C", out=300, fan_in=100, scheme="glorot")
    assert g.square().sum(-1).mean() == pytest.approx(2 / (100 + 300), rel=0.02)


def test_quaternion_polar_is_parcollet():
    """He: sigma = 1 / sqrt(2 fan_in), |W| = sigma chi_4, Var(W) = 4 sigma^2; per component 2 sigma^2 (real) and
    2 sigma^2 / 3 (each imaginary: uniform phase, random unit axis); the axis is uniform on the 2-sphere."""
    fan_in = 250
    w = sample("H", fan_in=fan_in)
    sigma = 1 / math.sqrt(2 * fan_in)
    mod = w.norm(dim=-1)
    chi4_mean = math.sqrt(2) * math.gamma(2.5) / math.gamma(2.0)
    assert mod.mean() == pytest.approx(sigma * chi4_mean, rel=0.02)
    assert mod.square().mean() == pytest.approx(4 * sigma ** 2, rel=0.02)
    var = w.square().mean(dim=(0, 1))
    assert var[0] == pytest.approx(2 * sigma ** 2, rel=0.03)
    for k in (1, 2, 3):
        assert var[k] == pytest.approx(2 * sigma ** 2 / 3, rel=0.03)
    cos = w[..., 0] / mod                                          # cos(theta), theta uniform: arcsine law
    assert cos.square().mean() == pytest.approx(0.5, rel=0.02)
    axis = w[..., 1:] / w[..., 1:].norm(dim=-1, keepdim=True)
    assert axis.mean(dim=(0, 1)).abs().max() < 0.01 and (axis.square().mean(dim=(0, 1)) - 1 / 3).abs().max() < 0.01
    g = sample("H", out=300, fan_in=100, scheme="glorot")
    assert g.square().sum(-1).mean() == pytest.approx(4 / (2 * (100 + 300)), rel=0.02)


@pytest.mark.parametrize("name", ["C", "H", "M2R", "M3R", "M2C"])
def test_polar_keeps_the_output_variance(name):
    """fan_in * Var(y_k) = gain^2 Var(x) for every output component (linear gain 1)."""
    torch.manual_seed(1)
    d = load_algebra(name).dim
    layer = AlgebraLinear(64, 256, name, bias=False).double()
    init.init_weight_(layer.weight, name, scheme="he", distribution="polar", nonlinearity="linear",
                      generator=torch.Generator().manual_seed(2))
    x = torch.randn(512, 64 * d, dtype=torch.float64)
    var = layer(x).unflatten(1, (256, d)).var(dim=(0, 1))
    assert torch.allclose(var, torch.ones(d, dtype=torch.float64), rtol=0.08), var


def test_polar_refusals():
    with pytest.raises(ValueError, match="unequally"):
        sample("Dual")
    with pytest.raises(ValueError, match="needs an algebra with a unit"):
        sample("Cross3")
    w = sample("R", out=200, fan_in=100)
    assert w.square().mean() == pytest.approx(2 / 100, rel=0.05)           # R: plain He normal
