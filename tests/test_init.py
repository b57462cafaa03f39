"""Structure-derived, variance-preserving initialisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runtime import load_algebra
from runtime import init as ainit
from runtime.layers import AlgebraConv2d, AlgebraLinear

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O", "RandH", "RandM4R"]
# The variance profile assumes uncorrelated input components, which the stacks below keep for these algebras;
# a random control's layer correlates its output components, so its stacks lose variance with depth (RandH and
# RandM4R fall to about 0.08-0.4 of the input's after 20 linear layers; docs/toolkit.md).
DEEP = [n for n in ALGEBRAS if not n.startswith("Rand")]


# Small models: one thread is faster than two on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", ALGEBRAS)
def test_profile_solves_the_variance_equations(name):
    A = load_algebra(name)
    S = ainit.structure_second_moments(A)
    T = A.structure
    assert np.allclose(S, (T ** 2).sum(axis=1))
    p = ainit.variance_profile(A)
    assert (p >= 0).all()
    if name == "RandM4R":
        # The random control's equations have no non-negative solution: the profile is the non-negative least
        # squares fit, certified by its optimality (KKT) conditions, and the output variances differ per component.
        r = S.T @ p - 1.0
        g = S @ r                                 # gradient of ||S^T p - 1||^2 / 2
        assert np.abs(r).max() > 0.1
        assert (g > -1e-5).all() and np.abs(g * p).max() < 1e-5
        return
    assert np.allclose(S.T @ p, 1.0)            # every output component gets exactly the input variance


def test_profiles_of_known_algebras():
    for name, d in [("C", 2), ("H", 4), ("Cross3", 3), ("M2R", 4), ("M3R", 9), ("M4R", 16), ("M2C", 8)]:
        p = ainit.variance_profile(name)
        assert np.allclose(p, p[0]) and len(p) == d, name
    assert np.allclose(ainit.variance_profile("C"), 0.5)        # s_k = 2
    assert np.allclose(ainit.variance_profile("H"), 0.25)       # s_k = 4
    assert np.allclose(ainit.variance_profile("M3R"), 1 / 3)    # s_k = n
    # Dual: the 1-component is fed by one constant, eps by two -> the eps weights must start at zero
    assert np.allclose(ainit.variance_profile("Dual"), [1.0, 0.0])


def test_fans():
    assert ainit.algebra_fans(torch.empty(5, 3, 4)) == (3, 5)
    assert ainit.algebra_fans(torch.empty(6, 2, 3, 3, 4)) == (18, 54)
    with pytest.raises(ValueError):
        ainit.algebra_fans(torch.empty(3, 4))


def _stack_variances(name, depth, width, relu, init, batch=512, seed=0):
    A = load_algebra(name)
    d = A.dim
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layers = [AlgebraLinear(width, width, algebra=name, bias=False) for _ in range(depth)]
    for layer in layers:
        init(layer.weight, g)
    x = torch.randn(batch, width * d, generator=g)
    out = []
    with torch.no_grad():
        h = x
        for layer in layers:
            z = layer(h)
            out.append(z.unflatten(1, (width, d)).square().mean(dim=(0, 1)))   # 2nd moment per component
            h = F.relu(z) if relu else z
    return torch.stack(out)                                                   # (depth, d)


@pytest.mark.parametrize("name", DEEP)
def test_variance_kept_through_20_linear_layers(name):
    """Gain-1 init, no activation: every component's variance stays within 2x of the input's."""
    width = 512 // load_algebra(name).dim
    v = _stack_variances(name, 20, width, relu=False, batch=256,
                         init=lambda w, g: ainit.kaiming_normal_(w, name, nonlinearity="linear", generator=g))
    assert v.min() > 0.5 and v.max() < 2.0, v[-1]


@pytest.mark.parametrize("name", DEEP)
def test_variance_kept_through_20_relu_layers_he(name):
    """He init with split ReLU keeps the pre-activation second moment of every component.

    ReLU stacks fluctuate multiplicatively with depth/width at any finite width (log-variance
    ~ 5 depth / width), so the check is on the geometric mean over six independent stacks, relative
    to the first layer (whose input is not rectified)."""
    width = max(128, 512 // load_algebra(name).dim)
    runs = []
    for seed in range(6):
        v = _stack_variances(name, 20, width, relu=True, batch=32, seed=seed,
                             init=lambda w, g: ainit.kaiming_normal_(w, name, nonlinearity="relu", generator=g))
        runs.append(v / v[0])
    gm = torch.stack(runs).log().mean(0).exp()
    assert gm.min() > 0.5 and gm.max() < 2.0, gm[-1]


@pytest.mark.parametrize("name", ["C", "Dual", "M2R"])
def test_glorot_square_layers_equal_fan_in(name):
    v = _stack_variances(name, 20, 128, relu=False,
                         init=lambda w, g: ainit.xavier_normal_(w, name, generator=g))
    assert v.min() > 0.5 and v.max() < 2.0


def test_one_common_variance_fails_for_dual():
    """The test above has teeth: Dual with one weight variance for both components (mean fan-in 1.5)
    drifts apart by 4/3 per layer."""
    s_mean = 1.5

    def naive(w, g):
        fan_in = w.shape[1]
        with torch.no_grad():
            w.normal_(0.0, (1.0 / (fan_in * s_mean)) ** 0.5, generator=g)

    v = _stack_variances("Dual", 20, 128, relu=False, init=naive)
    assert v.max() > 2.0 or v.min() < 0.5


def test_variance_kept_through_conv_stack():
    """Conv fans count kernel taps: 20 H 3x3 convolutions (circular padding, so no border decay)
    keep every component's variance."""
    name, C, d = "H", 16, 4
    g = torch.Generator().manual_seed(0)
    convs = [AlgebraConv2d(C, C, 3, padding=0, bias=False, algebra=name) for _ in range(20)]
    for c in convs:
        ainit.kaiming_normal_(c.weight, name, nonlinearity="linear", generator=g)
    h = torch.randn(8, C * d, 8, 8, generator=g)
    with torch.no_grad():
        for c in convs:
            h = c(F.pad(h, (1, 1, 1, 1), mode="circular"))
            m = h.unflatten(1, (C, d)).square().mean(dim=(0, 1, 3, 4))
            assert m.min() > 0.5 and m.max() < 2.0, m


def test_uniform_and_normal_have_the_same_component_variances():
    w = torch.empty(256, 256, 2)
    ainit.kaiming_uniform_(w, "Dual", nonlinearity="linear", generator=torch.Generator().manual_seed(1))
    var = w.square().mean(dim=(0, 1))
    assert abs(var[0].item() * 256 - 1.0) < 0.02 and var[1].item() == 0.0
    w4 = torch.empty(128, 64, 3, 3, 4)
    ainit.xavier_uniform_(w4, "H", gain=2.0, generator=torch.Generator().manual_seed(1))
    fan_in, fan_out = 64 * 9, 128 * 9
    expect = 4.0 * 0.25 / ((fan_in + fan_out) / 2)
    assert torch.allclose(w4.square().mean(dim=(0, 1, 2, 3)), torch.full((4,), expect), rtol=0.03)
    with pytest.raises(ValueError):
        ainit.kaiming_normal_(torch.empty(3, 3, 3), "H")      # last dim is not d


def test_init_model_touches_algebra_layers_only():
    model = torch.nn.Sequential(AlgebraLinear(8, 8, algebra="C"), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    real_before = model[2].weight.detach().clone()
    with torch.no_grad():
        model[0].bias.fill_(1.0)
    ainit.init_model_(model, scheme="glorot", generator=torch.Generator().manual_seed(0))
    assert torch.equal(model[2].weight, real_before)
    assert model[0].bias.abs().max() == 0
    assert [n for n, _ in ainit.algebra_layers(model)] == ["0"]
    with pytest.raises(ValueError):
        ainit.init_weight_(model[0].weight, "C", scheme="lecun")
