"""Element pruning: exact whole-element sparsity, schedules, masks through training/checkpoints/compile,
block-CSR inference form."""
from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from runtime import load_algebra
from runtime import sparsity as sp
from runtime.layers import AlgebraConv1d, AlgebraConv2d, AlgebraConv3d, AlgebraLinear

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O", "RandH", "RandM4R"]


# Small models: one thread is faster than two on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def mlp(name, sizes=(6, 8, 5), seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [AlgebraLinear(a, b, algebra=name), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def zero_elements(w: torch.Tensor) -> torch.Tensor:
    return (w == 0).all(-1)


# ---- one shot ------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(ALGEBRAS), s=st.floats(0.0, 1.0), out=st.integers(1, 7), inn=st.integers(1, 7))
def test_one_shot_hits_exact_sparsity_in_whole_elements(name, s, out, inn):
    layer = AlgebraLinear(inn, out, algebra=name)
    norms = layer.weight.detach().norm(dim=-1)
    masks = sp.prune_elements_(layer, s)
    n = out * inn
    k = math.floor(s * n + 0.5)
    w = layer.weight.detach()
    mask = masks[""]
    assert int((~mask).sum()) == k
    assert torch.equal(zero_elements(w), ~mask)          # whole elements, and only the pruned ones
    assert torch.equal(w[mask], sp.raw_weight(layer).detach()[mask])
    if 0 < k < n:
        assert norms[~mask].max() <= norms[mask].min()   # the smallest norms went


def test_layer_and_global_scope():
    model = mlp("H", (10, 12, 4))
    with torch.no_grad():
        model[2].weight.mul_(10.0)                        # the second layer has much larger elements
    sp.prune_elements_(model, 0.5, scope="global")
    rep = sp.sparsity_report(model)
    assert sum(r.pruned for r in rep) == round(0.5 * (120 + 48))
    assert rep[0].pruned > rep[1].pruned                  # one global threshold prunes the small layer more
    fresh = mlp("H", (10, 12, 4))
    sp.prune_elements_(fresh, 0.25)
    assert [r.pruned for r in sp.sparsity_report(fresh)] == [30, 12]
    assert "total" in sp.format_report(fresh)
    with pytest.raises(ValueError):
        sp.prune_elements_(fresh, 1.5)
    with pytest.raises(ValueError):
        sp.prune_elements_(fresh, 0.5, scope="row")


def test_pruning_never_revives_and_is_monotone():
    model = mlp("C")
    m1 = {k: v.clone() for k, v in sp.prune_elements_(model, 0.3).items()}
    with torch.no_grad():                                 # make the pruned ones the biggest in `original`
        for (_, layer), mask in zip(sp.prunable_layers(model), m1.values()):
            sp.raw_weight(layer)[~mask] = 100.0
    m2 = sp.prune_elements_(model, 0.6)
    for k in m1:
        assert not (m2[k] & ~m1[k]).any()


# ---- gradual -----------------------------------------------------------------------------------

def test_cubic_schedule_values():
    f = lambda t: sp.cubic_sparsity(t, 0.9, 100, 500, 0.1)
    assert f(0) == 0.0 and f(99) == 0.0
    assert f(100) == pytest.approx(0.1)
    assert f(300) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5 ** 3)
    assert f(500) == pytest.approx(0.9) and f(10_000) == pytest.approx(0.9)
    vals = [f(t) for t in range(100, 501, 10)]
    assert all(a <= b for a, b in zip(vals, vals[1:]))
    # decelerating: early increments larger than late ones
    assert vals[1] - vals[0] > vals[-1] - vals[-2]


def test_gradual_pruner_during_training_keeps_masks_and_hits_targets():
    name = "M2R"
    model = mlp(name, (6, 10, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    pruner = sp.GradualPruner(model, 0.8, start_step=2, end_step=12, frequency=3)
    x = torch.randn(16, 6 * 4)
    target = torch.randn(16, 3 * 4)
    n_elems = [60, 30]
    seen = []
    for step in range(16):
        loss = (model(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        changed = pruner.step(step)
        rep = sp.sparsity_report(model)
        if changed:
            s = pruner.sparsity_at(step)
            assert [r.pruned for r in rep] == [math.floor(s * n + 0.5) for n in n_elems]
            seen.append(step)
        for _, layer in sp.prunable_layers(model):
            mask = sp.get_mask(layer)
            if mask is not None:           # masked elements are exactly zero after optimizer steps
                assert zero_elements(layer.weight.detach())[~mask].all()
    assert seen == [2, 5, 8, 11, 12]
    assert [r.pruned for r in sp.sparsity_report(model)] == [48, 24]
    state = pruner.state_dict()
    again = sp.GradualPruner(model, 0.8, 2, 12, 3)
    again.load_state_dict(state)
    assert again.last_step == 15 and again.current_sparsity == pytest.approx(0.8)


def test_pruned_gradients_are_zero():
    layer = AlgebraLinear(5, 4, algebra="H")
    mask = sp.prune_elements_(layer, 0.5)[""]
    layer(torch.randn(3, 20)).square().sum().backward()
    g = sp.raw_weight(layer).grad
    assert g[~mask].abs().max() == 0 and g[mask].abs().max() > 0


# ---- checkpoints and compile ---------------------------------------------------------------------

def test_masks_survive_checkpoints():
    model = mlp("Cross3")
    sp.prune_elements_(model, 0.7)
    x = torch.randn(4, 6 * 3)
    y = model(x)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf)
    assert any(k.endswith("parametrizations.weight.0.mask") for k in sd)
    fresh = mlp("Cross3", seed=1)                          # never pruned, different weights
    sp.load_pruned_state_dict(fresh, sd)
    assert torch.allclose(fresh(x), y)
    for (_, a), (_, b) in zip(sp.prunable_layers(model), sp.prunable_layers(fresh)):
        assert torch.equal(sp.get_mask(a), sp.get_mask(b))
    # permanent pruning: plain parameters holding zeros, loadable into a plain model
    sp.remove_pruning_(fresh)
    assert not any(sp.is_pruned(m) for _, m in sp.prunable_layers(fresh))
    plain = mlp("Cross3", seed=2)
    plain.load_state_dict(fresh.state_dict())
    assert torch.allclose(plain(x), y)


def test_masks_hold_under_torch_compile():
    torch._dynamo.reset()
    model = mlp("C", (6, 8, 5))
    sp.prune_elements_(model, 0.5)
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(4, 12)
    assert torch.allclose(compiled(x), model(x), atol=1e-6)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        loss = compiled(x).square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for _, layer in sp.prunable_layers(model):
        assert zero_elements(layer.weight.detach())[~sp.get_mask(layer)].all()
    sp.prune_elements_(model, 0.75)                       # masks change in place: the compiled model follows
    assert torch.allclose(compiled(x), model(x), atol=1e-6)
    assert [r.sparsity for r in sp.sparsity_report(model)] == [0.75, 0.75]


# ---- block-CSR ----------------------------------------------------------------------------------

def test_block_csr_format():
    w = torch.zeros(3, 4, 2)
    w[0, 1] = torch.tensor([1.0, 2.0])
    w[0, 3] = torch.tensor([0.0, 5.0])
    w[2, 0] = torch.tensor([3.0, 0.0])
    crow, col, val = sp.block_csr(w)
    assert crow.tolist() == [0, 2, 2, 3] and col.tolist() == [1, 3, 0]
    assert crow.dtype == col.dtype == torch.int64
    assert torch.equal(val, torch.tensor([[1.0, 2.0], [0.0, 5.0], [3.0, 0.0]]))
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[0, 3] = False
    crow, col, val = sp.block_csr(w, mask)
    assert crow.tolist() == [0, 1, 1, 2] and val.shape == (2, 2)


@pytest.mark.parametrize("name", ALGEBRAS)
def test_sparse_linear_reproduces_dense(name):
    d = load_algebra(name).dim
    model = mlp(name, (7, 9, 4))
    sp.prune_elements_(model, 0.7)
    x = torch.randn(5, 7 * d)
    y = model(x)
    layer = model[0]
    fast = sp.to_block_sparse(layer, 0.0)
    assert fast.nnz == int(sp.get_mask(layer).sum())
    assert fast.values.shape == (fast.nnz, d) and fast.crow_indices.shape == (10,)
    assert torch.allclose(fast(x), layer(x), atol=1e-5)
    assert torch.allclose(fast(x.view(5, 1, 7 * d)).squeeze(1), layer(x), atol=1e-5)   # leading dims
    sp.convert_to_block_sparse(model, 0.0)
    assert isinstance(model[0], sp.BlockSparseAlgebraLinear) and isinstance(model[2], sp.BlockSparseAlgebraLinear)
    assert torch.allclose(model(x), y, atol=1e-5)


@pytest.mark.parametrize("name", ["R", "C", "H", "M4R"])
def test_to_block_sparse_keeps_a_layer_dense_below_the_crossover(name):
    """Below the measured density crossover the dense layer is faster, so to_block_sparse returns a dense copy
    with the mask made permanent; above, the sparse form; min_sparsity overrides; convert_to_block_sparse
    follows the same choice."""
    limit = sp.sparse_max_density(name)
    assert 0 < limit < 1
    d = load_algebra(name).dim
    x = torch.randn(3, 40 * d)
    for sparsity, sparse in ((1 - limit - 0.05, False), (1 - limit + 0.05, True)):
        torch.manual_seed(1)
        layer = AlgebraLinear(40, 30, algebra=name)
        sp.prune_elements_(layer, sparsity)
        assert abs(sp.element_sparsity(layer) - sparsity) < 1e-3
        fast = sp.to_block_sparse(layer)
        assert isinstance(fast, sp.BlockSparseAlgebraLinear) == sparse
        assert sparse or (isinstance(fast, AlgebraLinear) and fast is not layer and not sp.is_pruned(fast))
        assert torch.allclose(fast(x), layer(x), atol=1e-5)
        assert isinstance(sp.to_block_sparse(layer, 0.0), sp.BlockSparseAlgebraLinear)      # asked for: sparse
        assert isinstance(sp.to_block_sparse(layer, 0.999), AlgebraLinear) and sp.is_pruned(layer)
        model = nn.Sequential(layer)
        sp.convert_to_block_sparse(model)
        assert isinstance(model[0], sp.BlockSparseAlgebraLinear) == sparse


@pytest.mark.parametrize("name,Conv,nd,kw", [
    ("H", AlgebraConv2d, 2, dict(stride=2, padding=1, dilation=2, groups=2)),
    ("M2R", AlgebraConv2d, 2, dict(stride=1, padding=1)),
    ("Dual", AlgebraConv1d, 1, dict(stride=2, padding=2, dilation=1, groups=1)),
    ("C", AlgebraConv3d, 3, dict(stride=1, padding=1, groups=2)),
    ("Cross3", AlgebraConv2d, 2, dict(stride=(1, 2), padding=(0, 1))),
])
def test_sparse_conv_reproduces_dense(name, Conv, nd, kw):
    d = load_algebra(name).dim
    torch.manual_seed(0)
    conv = Conv(4, 6, 3, algebra=name, **kw)
    with torch.no_grad():
        conv.bias.normal_()
    sp.prune_elements_(conv, 0.6)
    x = torch.randn((2, 4 * d) + (7,) * nd)
    fast = sp.to_block_sparse(conv)
    assert fast.nnz == int(sp.get_mask(conv).sum())
    assert torch.allclose(fast(x), conv(x), atol=1e-5)


def test_sparse_form_matches_the_cuda_engine_format():
    """The CUDA engineer's bsr_linear takes the same (crow, col, values) triple; on CPU it runs its
    torch reference, which must agree with ours."""
    try:
        from runtime.kernels import cuda as ac
    except Exception:                                       # pragma: no cover - optional module
        pytest.skip("runtime.kernels.cuda not available")
    layer = AlgebraLinear(6, 5, algebra="M2C")
    with torch.no_grad():
        layer.bias.normal_()
    sp.prune_elements_(layer, 0.5)
    fast = sp.to_block_sparse(layer, 0.0)
    x = torch.randn(3, 6 * 8)
    y = ac.bsr_linear("M2C", fast.crow_indices, fast.col_indices, fast.values.detach(), x, fast.bias.detach())
    assert torch.allclose(y, fast(x), atol=1e-5) and torch.allclose(y, layer(x), atol=1e-5)
