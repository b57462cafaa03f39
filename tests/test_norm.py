"""Algebra normalisation: component / whitening / norm batch norms and layer norm."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import load_algebra
from runtime.layers.norm import (AlgebraBatchNorm1d, AlgebraBatchNorm2d, AlgebraBatchNorm3d, AlgebraLayerNorm,
                                 inv_sqrtm_psd)

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "RandH", "RandM4R"]


def element_cov(y: torch.Tensor, C: int, d: int) -> torch.Tensor:
    """Biased per-element covariance (C, d, d) of (N, C*d, *spatial)."""
    ys = y.unflatten(1, (C, d)).movedim(1, 0).movedim(2, 1).reshape(C, d, -1).double()
    ys = ys - ys.mean(-1, keepdim=True)
    return ys @ ys.mT / ys.shape[-1]


def correlated(N, C, d, spatial=(), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((N, C, d) + spatial, generator=g, dtype=torch.float64)
    mix = torch.randn(C, d, d, generator=g, dtype=torch.float64) + 2 * torch.eye(d, dtype=torch.float64)
    shift = torch.randn(C, d, generator=g, dtype=torch.float64) * 3
    x = torch.einsum("cij,ncj...->nci...", mix, z) + shift.reshape((1, C, d) + (1,) * len(spatial))
    return x.flatten(1, 2).to(dtype)


# ---- whitening ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALGEBRAS)
def test_whitening_output_covariance_is_identity(name):
    d = load_algebra(name).dim
    C = 3
    x = correlated(64, C, d, (3, 3), seed=1)
    bn = AlgebraBatchNorm2d(C, algebra=name, mode="whitening", eps=1e-6)
    y = bn(x)
    cov = element_cov(y, C, d)
    eye = torch.eye(d, dtype=torch.float64).expand(C, d, d)
    assert torch.allclose(cov, eye, atol=2e-3), (cov - eye).abs().max()
    mean = y.unflatten(1, (C, d)).mean(dim=(0, 3, 4))
    assert mean.abs().max() < 1e-4
    # the input was far from white, so this is not vacuous
    assert not torch.allclose(element_cov(x, C, d), eye, atol=0.5)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["C", "H", "Dual", "M2R", "M2C"]), seed=st.integers(0, 10_000),
       N=st.integers(24, 80))
def test_whitening_1d_identity_covariance_property(name, seed, N):
    d = load_algebra(name).dim
    x = correlated(N, 2, d, seed=seed, dtype=torch.float64)
    eps = 1e-9
    y = AlgebraBatchNorm1d(2, algebra=name, mode="whitening", eps=eps, dtype=torch.float64)(x)
    cov = element_cov(y, 2, d)
    # Whitening with (V + eps I)^(-1/2) leaves V (V + eps I)^-1: the identity up to eps / (smallest
    # eigenvalue of V), which random mixing matrices can make large; compare with the exact value.
    V = element_cov(x, 2, d)
    expected = V @ torch.linalg.inv(V + eps * torch.eye(d, dtype=torch.float64))
    assert torch.allclose(cov, expected, atol=1e-7)
    assert torch.allclose(expected.diagonal(dim1=-2, dim2=-1).mean(-1), torch.ones(2, dtype=torch.float64),
                          atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["constant", "rank1", "one_component", "zeros"])
def test_whitening_degenerate_batches_have_no_nan(dtype, case):
    d, C, N = 4, 2, 10
    g = torch.Generator().manual_seed(0)
    if case == "constant":
        x = torch.full((N, C * d), 3.0, dtype=dtype)
    elif case == "zeros":
        x = torch.zeros(N, C * d, dtype=dtype)
    elif case == "rank1":
        x = torch.randn(N, C, 1, generator=g, dtype=dtype).expand(N, C, d).reshape(N, C * d).clone()
    else:
        x = torch.zeros(N, C, d, dtype=dtype)
        x[:, :, 1] = torch.randn(N, C, generator=g, dtype=dtype)
        x = x.reshape(N, C * d)
    x.requires_grad_(True)
    bn = AlgebraBatchNorm1d(C, algebra="H", mode="whitening", dtype=dtype)
    y = bn(x)
    (y.square().sum() + (y * torch.arange(y.numel(), dtype=dtype).reshape(y.shape)).sum()).backward()
    assert torch.isfinite(y).all()
    assert torch.isfinite(x.grad).all() and torch.isfinite(bn.weight.grad).all()
    assert torch.isfinite(bn.running_cov).all()
    bn.eval()
    assert torch.isfinite(bn(x)).all()


def test_inv_sqrtm_values_and_gradient_with_repeated_eigenvalues():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    V = A @ A.mT + 0.5 * torch.eye(4, dtype=torch.float64)
    W = inv_sqrtm_psd(V)
    assert torch.allclose(W @ V @ W, torch.eye(4, dtype=torch.float64).expand(3, 4, 4), atol=1e-10)
    # repeated eigenvalues: torch.linalg.eigh's own backward divides by zero gaps here
    for M in (V, 2.0 * torch.eye(4, dtype=torch.float64).expand(3, 4, 4).clone(),
              torch.diag(torch.tensor([1.0, 1.0, 3.0, 3.0], dtype=torch.float64)).expand(2, 4, 4).clone()):
        M = M.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: inv_sqrtm_psd(0.5 * (t + t.mT)), (M,), eps=1e-6, atol=1e-6)


def test_inv_sqrtm_float32_input_is_computed_in_float64():
    V = torch.diag(torch.tensor([1e-6, 1.0, 1e4], dtype=torch.float32))
    W = inv_sqrtm_psd(V)
    assert W.dtype == torch.float32
    assert torch.allclose(torch.diagonal(W), torch.tensor([1e3, 1.0, 1e-2]), rtol=1e-6)


# ---- component mode == torch BatchNorm ------------------------------------------------------------

@pytest.mark.parametrize("momentum", [0.1, None])
def test_component_mode_matches_torch_batchnorm(momentum):
    C, d = 3, 4
    ours = AlgebraBatchNorm2d(C, algebra="H", mode="component", momentum=momentum)
    ref = torch.nn.BatchNorm2d(C * d, momentum=momentum)
    with torch.no_grad():
        w = torch.randn(C * d)
        ours.weight.copy_(w.view(C, d))
        ref.weight.copy_(w)
    for seed in range(3):
        x = correlated(8, C, d, (4, 4), seed=seed)
        assert torch.allclose(ours(x), ref(x), atol=1e-5)
    assert torch.allclose(ours.running_mean.flatten(), ref.running_mean, atol=1e-6)
    assert torch.allclose(ours.running_var.flatten(), ref.running_var, atol=1e-5)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    ours.eval(), ref.eval()
    x = correlated(5, C, d, (2, 2), seed=9)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


# ---- norm mode -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["C", "H", "Dual", "Cross3", "M3R"])
def test_norm_mode_unit_mean_square_and_directions_kept(name):
    d = load_algebra(name).dim
    C = 2
    x = correlated(50, C, d, (2,), seed=3)
    bn = AlgebraBatchNorm1d(C, algebra=name, mode="norm")
    y = bn(x)
    xs, ys = x.unflatten(1, (C, d)), y.unflatten(1, (C, d))
    xc = xs - xs.mean(dim=(0, 3), keepdim=True)
    ms = ys.square().sum(2).mean(dim=(0, 2)) / d
    assert torch.allclose(ms, torch.ones(C), atol=1e-3)
    # each element is only scaled (by one positive number per element channel)
    ratio = ys / xc
    assert torch.allclose(ratio, ratio[:1, :, :1, :1].expand_as(ratio), rtol=1e-3, atol=1e-3)


# ---- running statistics, eval, state_dict ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["component", "whitening", "norm"])
def test_running_stats_eval_and_state_dict(mode):
    name, C = "M2R", 2
    d = 4
    bn = AlgebraBatchNorm2d(C, algebra=name, mode=mode, momentum=0.5)
    xs = [correlated(16, C, d, (3, 3), seed=s) for s in range(3)]
    for x in xs:
        bn(x)
    assert int(bn.num_batches_tracked) == 3
    # momentum 0.5 on the batch means: running = 0.125*0 + 0.125 m0 + 0.25 m1 + 0.5 m2
    means = [x.unflatten(1, (C, d)).mean(dim=(0, 3, 4)) for x in xs]
    expect = 0.125 * means[0] + 0.25 * means[1] + 0.5 * means[2]
    assert torch.allclose(bn.running_mean, expect, atol=1e-5)
    if mode == "whitening":
        covs = [element_cov(x, C, d).float() * (144 / 143) for x in xs]
        ecov = 0.125 * torch.eye(d) + 0.125 * covs[0] + 0.25 * covs[1] + 0.5 * covs[2]
        assert torch.allclose(bn.running_cov, ecov, atol=1e-3)
    bn.eval()
    x = correlated(4, C, d, (2, 2), seed=7)
    y_eval = bn(x)
    # eval must not touch the statistics and must not depend on the batch
    assert int(bn.num_batches_tracked) == 3
    assert torch.allclose(bn(x[:1]), y_eval[:1], atol=1e-6)
    sd = bn.state_dict()
    assert "num_batches_tracked" in sd and "running_mean" in sd
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    fresh = AlgebraBatchNorm2d(C, algebra=name, mode=mode)
    fresh.load_state_dict(torch.load(buf))
    fresh.eval()
    assert torch.allclose(fresh(x), y_eval, atol=1e-6)
    fresh.reset_running_stats()
    assert int(fresh.num_batches_tracked) == 0 and fresh.running_mean.abs().max() == 0


@pytest.mark.parametrize("mode", ["component", "whitening", "norm"])
def test_cumulative_average_and_no_tracking(mode):
    C, d = 2, 2
    bn = AlgebraBatchNorm1d(C, algebra="C", mode=mode, momentum=None)
    xs = [correlated(20, C, d, seed=s) for s in range(4)]
    for x in xs:
        bn(x)
    expect = torch.stack([x.unflatten(1, (C, d)).mean(0) for x in xs]).mean(0)
    assert torch.allclose(bn.running_mean, expect, atol=1e-5)
    free = AlgebraBatchNorm1d(C, algebra="C", mode=mode, track_running_stats=False)
    assert free.running_mean is None
    free.eval()
    x = xs[0]
    free.train()
    y_train = free(x)
    free.eval()
    assert torch.allclose(free(x), y_train, atol=1e-6)   # eval uses batch statistics, like torch


@pytest.mark.parametrize("mode", ["component", "whitening", "norm"])
def test_batchnorm_shapes_and_errors(mode):
    bn3 = AlgebraBatchNorm3d(2, algebra="C", mode=mode)
    assert bn3(torch.randn(3, 4, 2, 2, 2)).shape == (3, 4, 2, 2, 2)
    with pytest.raises(ValueError):
        AlgebraBatchNorm2d(2, algebra="C", mode=mode)(torch.randn(3, 4, 5))
    with pytest.raises(ValueError):
        AlgebraBatchNorm1d(2, algebra="C", mode=mode)(torch.randn(3, 5))
    with pytest.raises(ValueError):
        AlgebraBatchNorm1d(2, algebra="C", mode=mode)(torch.randn(1, 4))
    with pytest.raises(ValueError):
        AlgebraBatchNorm1d(2, algebra="C", mode="bogus")


def test_batchnorm_trains_and_grads_flow():
    torch.manual_seed(0)
    for mode in ("component", "whitening", "norm"):
        bn = AlgebraBatchNorm2d(3, algebra="H", mode=mode)
        x = correlated(6, 3, 4, (2, 2), seed=2).requires_grad_(True)
        bn(x).pow(3).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert bn.weight.grad is not None and bn.bias.grad is not None


# ---- layer norm ---------------------------------------------------------------------------------

def test_layernorm_component_matches_torch():
    C, d = 5, 4
    ln = AlgebraLayerNorm(C, algebra="H", mode="component")
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(2, 3, C * d)
    ref = F.layer_norm(x, (C * d,), ln.weight.flatten(), ln.bias.flatten(), 1e-5)
    assert torch.allclose(ln(x), ref, atol=1e-6)


@pytest.mark.parametrize("name", ["C", "Dual", "M2C"])
def test_layernorm_norm_mode(name):
    d = load_algebra(name).dim
    C = 6
    ln = AlgebraLayerNorm(C, algebra=name, mode="norm")
    x = torch.randn(4, 7, C * d) * 5 + 2
    y = ln(x).unflatten(-1, (C, d))
    assert torch.allclose(y.mean(-2), torch.zeros(4, 7, d), atol=1e-5)       # mean element removed
    assert torch.allclose(y.square().sum(-1).mean(-1) / d, torch.ones(4, 7), atol=1e-3)
    xs = x.unflatten(-1, (C, d))
    xc = xs - xs.mean(-2, keepdim=True)
    r = y / xc
    assert torch.allclose(r, r[..., :1, :1].expand_as(r), rtol=1e-3)     # one real scale per token
    with pytest.raises(ValueError):
        ln(torch.randn(2, C * d + 1))
