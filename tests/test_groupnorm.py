"""AlgebraGroupNorm and AlgebraInstanceNorm1d/2d/3d: torch equality for R, per-component oracle through
torch's group norm, and the defining properties of the whitening and norm modes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck

from runtime import load_algebra
from runtime.layers import (AlgebraGroupNorm, AlgebraInstanceNorm1d, AlgebraInstanceNorm2d,
                            AlgebraInstanceNorm3d)

from test_functional import close

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
MODES = ["component", "whitening", "norm"]
INSTANCE = {1: (AlgebraInstanceNorm1d, nn.InstanceNorm1d), 2: (AlgebraInstanceNorm2d, nn.InstanceNorm2d),
            3: (AlgebraInstanceNorm3d, nn.InstanceNorm3d)}


def _copy_r_affine(alg: nn.Module, ref: nn.Module) -> None:
    """Random affine parameters in ref, copied into alg (algebra R) in the shape of alg's mode."""
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
        alg.weight.copy_(ref.weight.reshape(alg.weight.shape))
        alg.bias.copy_(ref.bias.reshape(alg.bias.shape))


def _correlated(N, C, d, *spatial, seed=0):
    """Inputs whose components are correlated (a random mixing per element) with a non-zero mean."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, C, d, *spatial, generator=g, dtype=F64)
    mix = torch.randn(C, d, d, generator=g, dtype=F64)
    x = torch.einsum("cij,ncj...->nci...", mix, z) + torch.randn(C, d, *[1] * len(spatial), generator=g, dtype=F64)
    return x.flatten(1, 2)


# ---------------------------------------------------------------------------------- R equals torch
@pytest.mark.parametrize("mode", MODES)
def test_r_group_norm_equals_torch(mode):
    torch.manual_seed(0)
    for shape in [(3, 6), (3, 6, 5), (2, 6, 4, 3)]:
        for affine in (True, False):
            ref = nn.GroupNorm(3, 6, affine=affine, dtype=F64)
            alg = AlgebraGroupNorm(3, 6, "R", mode=mode, affine=affine, dtype=F64)
            if affine:
                _copy_r_affine(alg, ref)
            x = torch.randn(*shape, dtype=F64, requires_grad=True)
            y, r = alg(x), ref(x)
            close(y, r)
            g = torch.randn_like(y)
            got = torch.autograd.grad(y, [x, *alg.parameters()], g)
            want = torch.autograd.grad(r, [x, *ref.parameters()], g)
            for a, b in zip(got, want):
                close(a.reshape(b.shape), b, scale=10)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_r_instance_norm_equals_torch(nd, mode):
    torch.manual_seed(1)
    cls, tcls = INSTANCE[nd]
    for affine, track, momentum in [(False, False, 0.1), (True, True, 0.1), (False, True, None), (True, False, 0.3)]:
        ref = tcls(3, affine=affine, track_running_stats=track, momentum=momentum, dtype=F64)
        alg = cls(3, "R", mode=mode, affine=affine, track_running_stats=track, momentum=momentum, dtype=F64)
        if affine:
            _copy_r_affine(alg, ref)
        for _ in range(3):                            # training steps update the running statistics alike
            x = torch.randn(2, 3, *([4] * nd), dtype=F64) * 2 + 1
            close(alg(x), ref(x))
            close(alg(x[0]), ref(x[0]))               # unbatched
        ref.eval()
        alg.eval()
        close(alg(x), ref(x))
        if track:
            second = alg.running_cov if mode == "whitening" else alg.running_var
            close(alg.running_mean.reshape(-1), ref.running_mean)
            close(second.reshape(-1), ref.running_var)
        if mode != "whitening":                       # whitening keeps running_cov instead of running_var
            assert set(alg.state_dict()) == set(ref.state_dict())


# ------------------------------------------------------------------------------- component mode
@pytest.mark.parametrize("name", ["C", "H", "Cross3", "M2C"])
def test_component_mode_normalises_every_component_of_a_group(name):
    """Oracle: torch's group norm with one group per (group, component) on the regrouped input."""
    d = load_algebra(name).dim
    torch.manual_seed(2)
    N, G, Cg, S = 2, 2, 3, 5
    x = _correlated(N, G * Cg, d, S)
    gn = AlgebraGroupNorm(G, G * Cg, name, mode="component", dtype=F64)
    with torch.no_grad():
        gn.weight.normal_()
        gn.bias.normal_()
    regroup = x.view(N, G, Cg, d, S).transpose(2, 3).reshape(N, G * d, Cg * S)
    ref = F.group_norm(regroup, G * d, eps=gn.eps).view(N, G, d, Cg, S).transpose(2, 3).reshape(N, G * Cg, d, S)
    ref = ref * gn.weight.view(1, G * Cg, d, 1) + gn.bias.view(1, G * Cg, d, 1)
    close(gn(x), ref.reshape(N, -1, S))
    # instance norm in component mode is torch's instance norm on the C*d real channels
    inorm = AlgebraInstanceNorm1d(G * Cg, name, mode="component")
    close(inorm(x), F.instance_norm(x, eps=inorm.eps))


# ----------------------------------------------------------------------- whitening / norm properties
def _groups(y, N, G, Cg, d, S):
    """(N, G, d, Cg*S): the samples of every (instance, group) unit, per component."""
    return y.reshape(N, G, Cg, d, S).transpose(2, 3).reshape(N, G, d, Cg * S)


@pytest.mark.parametrize("name", ["C", "H", "Dual", "M3R"])
def test_whitening_gives_identity_covariance_per_group(name):
    d = load_algebra(name).dim
    N, G, Cg, S = 2, 2, 3, 4 * d
    x = _correlated(N, G * Cg, d, S, seed=3)
    gn = AlgebraGroupNorm(G, G * Cg, name, mode="whitening", eps=1e-12, affine=False, dtype=F64)
    u = _groups(gn(x), N, G, Cg, d, S)
    n = u.shape[-1]
    close(u.mean(-1), torch.zeros(N, G, d))
    close(u @ u.mT / n, torch.eye(d, dtype=F64).expand(N, G, d, d), scale=1e4)
    assert not torch.allclose(_groups(x, N, G, Cg, d, S).var(-1), torch.ones(1, dtype=F64), atol=0.3)
    # instance norm: every element of every sample on its own
    inorm = AlgebraInstanceNorm1d(G * Cg, name, mode="whitening", eps=1e-12)
    v = inorm(x).reshape(N, G * Cg, d, S)
    close(v @ v.mT / S, torch.eye(d, dtype=F64).expand(N, G * Cg, d, d), scale=1e4)
    # the affine map acts on the whitened element: y = W z + b
    gna = AlgebraGroupNorm(G, G * Cg, name, mode="whitening", eps=1e-12, dtype=F64)
    with torch.no_grad():
        gna.weight.normal_()
        gna.bias.normal_()
    z = gn(x).reshape(N, G * Cg, d, S)
    want = torch.einsum("cij,ncjs->ncis", gna.weight, z) + gna.bias.view(1, G * Cg, d, 1)
    close(gna(x), want.reshape(N, -1, S), scale=10)


@pytest.mark.parametrize("name", ["C", "H", "M2R"])
def test_norm_mode_scales_groups_and_keeps_directions(name):
    d = load_algebra(name).dim
    N, G, Cg, S = 2, 2, 2, 6
    x = _correlated(N, G * Cg, d, S, seed=4)
    gn = AlgebraGroupNorm(G, G * Cg, name, mode="norm", eps=0.0, affine=False, dtype=F64)
    u = _groups(gn(x), N, G, Cg, d, S)
    close(u.mean(-1), torch.zeros(N, G, d))
    close(u.square().sum(2).mean(-1), torch.full((N, G), float(d), dtype=F64))     # E||y||^2 = d
    xc = _groups(x, N, G, Cg, d, S)
    xc = xc - xc.mean(-1, keepdim=True)
    ratio = u / xc                                   # one positive factor per group: directions are kept
    assert (ratio > 0).all()
    close(ratio, ratio[..., :1, :1].expand_as(ratio), scale=10)


def test_instance_norm_running_whitening_statistics():
    """Running mean / covariance are the momentum average of the batch mean of the per-instance (unbiased)
    statistics, and eval mode whitens with them."""
    torch.manual_seed(5)
    d, C, S = 2, 3, 7
    inorm = AlgebraInstanceNorm1d(C, "C", mode="whitening", track_running_stats=True, momentum=0.5, eps=1e-12)
    x = _correlated(4, C, d, S, seed=5).float()
    inorm(x)
    xs = x.double().view(4, C, d, S)
    mean = xs.mean(-1)
    xc = xs - mean.unsqueeze(-1)
    cov = (xc @ xc.mT / (S - 1)).mean(0)
    close(inorm.running_mean.double(), 0.5 * mean.mean(0), scale=1e5)
    close(inorm.running_cov.double(), 0.5 * torch.eye(d, dtype=F64) + 0.5 * cov, scale=1e5)
    inorm.eval()
    lam, Q = torch.linalg.eigh(inorm.running_cov.double())
    W = Q @ torch.diag_embed(lam.rsqrt()) @ Q.mT
    want = torch.einsum("cij,ncjs->ncis", W, xs - inorm.running_mean.double().view(1, C, d, 1))
    close(inorm(x).double(), want.reshape(4, C * d, S), scale=1e5)


# ---------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_group_and_instance_norm(mode):
    torch.manual_seed(6)
    x = _correlated(2, 2, 2, 4, seed=6).requires_grad_()
    gn = AlgebraGroupNorm(1, 2, "C", mode=mode, dtype=F64)
    inorm = AlgebraInstanceNorm1d(2, "C", mode=mode, affine=True, dtype=F64)
    for layer in (gn, inorm):
        with torch.no_grad():
            layer.weight.add_(0.1 * torch.randn_like(layer.weight))
            layer.bias.normal_()
        names = [n for n, _ in layer.named_parameters()]
        ps = [p.detach().clone().requires_grad_() for p in layer.parameters()]
        f = lambda x, *ps: torch.func.functional_call(layer, dict(zip(names, ps)), (x,))  # noqa: E731
        assert gradcheck(f, (x, *ps), fast_mode=True)


def test_errors_and_repr():
    with pytest.raises(ValueError, match="num_channels=6 must be divisible by num_groups=4"):
        AlgebraGroupNorm(4, 6, "H")
    with pytest.raises(ValueError, match="mode must be one of"):
        AlgebraGroupNorm(2, 4, "H", mode="batch")
    gn = AlgebraGroupNorm(2, 4, "H", mode="norm")
    assert "algebra=H" in repr(gn) and "mode='norm'" in repr(gn) and gn.weight.shape == (4,)
    with pytest.raises(ValueError, match=r"expected input \(N, 4\*4, \*\)"):
        gn(torch.randn(2, 12, 3))
    inorm = AlgebraInstanceNorm2d(2, "H", mode="whitening", affine=True)
    assert inorm.weight.shape == (2, 4, 4) and inorm.running_mean is None
    with pytest.raises(ValueError, match="expected 4D .* or 3D unbatched input"):
        inorm(torch.randn(8, 3))
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        inorm(torch.randn(2, 8, 1, 1))
    with pytest.raises(ValueError, match="expected 2 elements x 4 components = 8 channels"):
        inorm(torch.randn(2, 12, 3, 3))
