"""The cache of expanded weights (runtime.methods.weight_cache) is never stale and works under inference_mode.

Every edit a user makes to a weight — `.data` in place (EMA, weight averaging), `load_state_dict`, `copy_`
under no_grad, an optimizer step, `.to()`, a parametrization — is seen by the next call of every method and
layer that caches; the oracle is the same layer recomputed on the block path with autograd on (which never
caches).  A model built and run inside torch.inference_mode() expands each weight once, as under no_grad.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from runtime.layers import AlgebraConv2d, AlgebraConvTranspose2d, AlgebraGRU, AlgebraLinear
from runtime.methods import bilinear, block

METHODS = ["block", "fold", "bilinear"]


def _layer(kind: str, algebra: str, method: str) -> tuple[nn.Module, torch.Tensor]:
    d = {"M2R": 4, "H": 4, "M2C": 8}[algebra]
    if kind == "linear":
        return AlgebraLinear(5, 3, algebra=algebra, method=method), torch.randn(4, 5 * d)
    if kind == "conv":
        return AlgebraConv2d(2, 3, 3, algebra=algebra, method=method, padding=1), torch.randn(2, 2 * d, 5, 5)
    if kind == "conv_t":
        return AlgebraConvTranspose2d(2, 3, 3, algebra=algebra, method=method, stride=2), torch.randn(2, 2 * d, 4, 4)
    return AlgebraGRU(2, 3, algebra=algebra, method=method), torch.randn(4, 2, 2 * d)


def _out(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = m(x)
    return y[0] if isinstance(y, tuple) else y


def _oracle(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer recomputed on the block path with autograd recording (no cache involved), in float64."""
    ref = copy.deepcopy(layer).double()
    ref.method = "block"
    for p in ref.parameters():
        p.requires_grad_(True)
    with torch.enable_grad():
        return _out(ref, x.double()).detach()


def _edits():
    def data_mul(layer):
        layer.weight_or_first().data.mul_(2)

    def state_dict(layer):
        layer.load_state_dict({k: torch.randn_like(v) for k, v in layer.state_dict().items()})

    def copy_no_grad(layer):
        with torch.no_grad():
            layer.weight_or_first().copy_(torch.randn_like(layer.weight_or_first()))

    def optimizer_step(layer, x):
        opt = torch.optim.SGD(layer.parameters(), lr=0.5)
        with torch.enable_grad():
            _out(layer, x).square().sum().backward()
        opt.step()

    return {"data_mul": data_mul, "load_state_dict": state_dict, "copy_": copy_no_grad,
            "optimizer_step": optimizer_step}


def _first(self):
    return next(p for n, p in self.named_parameters() if n.startswith("weight"))


nn.Module.weight_or_first = _first   # test helper: the first weight parameter of a layer


@pytest.mark.parametrize("kind", ["linear", "conv", "conv_t", "gru"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("edit", list(_edits()))
def test_an_edited_weight_is_never_served_stale(kind, method, edit):
    torch.manual_seed(0)
    layer, x = _layer(kind, "M2R", method)
    layer.eval()
    with torch.no_grad():
        _out(layer, x)                                  # fills the cache
        _out(layer, x)
    fn = _edits()[edit]
    fn(layer, x) if edit == "optimizer_step" else fn(layer)
    with torch.no_grad():
        got = _out(layer, x).double()
    assert torch.allclose(got, _oracle(layer, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_to_and_parametrize_are_seen(method):
    torch.manual_seed(1)
    layer, x = _layer("linear", "H", method)
    with torch.no_grad():
        layer(x)
        layer.double()                                  # .to(): new storage and dtype
        assert torch.allclose(layer(x.double()), _oracle(layer, x), atol=1e-10)
    parametrize.register_parametrization(layer, "weight", _Scale())
    with torch.no_grad():
        got = layer(x.double())
        layer.parametrizations.weight.original.data.mul_(3)     # the parametrized weight is recomputed per call
        got3 = layer(x.double())
    assert torch.allclose(got3, _oracle(layer, x), atol=1e-9)
    bias = layer.bias.reshape(-1)
    assert torch.allclose(got3 - bias, 3 * (got - bias), atol=1e-9)        # and the edit before it was seen


class _Scale(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w


def _count_makes(monkeypatch) -> list:
    made = []
    for module in (block, bilinear):
        real = module.cached_weight

        def spy(weight, key, make, real=real):
            return real(weight, key, lambda: made.append(key) or make())
        monkeypatch.setattr(module, "cached_weight", spy)
    return made


@pytest.mark.parametrize("algebra", ["H", "M2R", "M2C"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_each_weight_is_expanded_once_whatever_the_mode(monkeypatch, algebra, method, mode):
    """A model built, loaded and run inside inference_mode expands its weight once for many calls, as under
    no_grad (it used to rebuild the expansion on every call: inference tensors have no version counter)."""
    made = _count_makes(monkeypatch)
    ctx = torch.inference_mode if mode == "inference_mode" else torch.no_grad
    with ctx():
        layer, x = _layer("linear", algebra, method)
        layer.load_state_dict({k: torch.randn_like(v) for k, v in layer.state_dict().items()})
        first = layer(x)
        for _ in range(4):
            assert torch.equal(layer(x), first)
    assert len(made) == 1
    with torch.no_grad():                                # the cached form also serves calls outside the mode
        assert torch.equal(layer(x), first)
    assert len(made) == 1


@pytest.mark.parametrize("groups", [1, 2])
def test_sparse_layers_follow_a_loaded_sparsity_pattern(groups):
    """The element-sparse inference layers keep no index copy that a load could leave stale: loading another
    layer's pattern (same number of stored elements, other positions) gives that layer's outputs."""
    from runtime import sparsity
    torch.manual_seed(3)
    convs = [AlgebraConv2d(4, 4, 3, algebra="H", groups=groups, padding=1) for _ in range(2)]
    lins = [AlgebraLinear(6, 5, algebra="H") for _ in range(2)]
    for pair in (convs, lins):
        for i, layer in enumerate(pair):
            with torch.no_grad():
                flat = layer.weight.view(-1, 4)
                keep = torch.zeros(flat.shape[0], dtype=torch.bool)
                keep[torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(i))[:flat.shape[0] // 3]] = True
                flat[~keep] = 0
        sparse = [sparsity.to_block_sparse(m).eval() for m in pair]
        assert sparse[0].nnz == sparse[1].nnz
        x = torch.randn(2, 16, 5, 5) if pair is convs else torch.randn(3, 24)
        with torch.no_grad():
            sparse[0](x)                                    # any per-layer state is made here
            sparse[0].load_state_dict(sparse[1].state_dict())
            assert torch.allclose(sparse[0](x), pair[1](x), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_a_non_contiguous_weight_is_compared_too(method):
    """The bitwise check without memcmp (non-contiguous weights; CUDA tensors take the same path)."""
    import runtime.functional as AF
    torch.manual_seed(5)
    base = torch.randn(6, 5, 4)
    w = base[::2]                                        # (3, 5, 4), not contiguous
    x = torch.randn(2, 20)
    with torch.no_grad():
        first = AF.algebra_linear(x, w, None, "M2R", method=method)
        w.data.mul_(-3)
        again = AF.algebra_linear(x, w, None, "M2R", method=method)
    assert not w.is_contiguous()
    assert torch.allclose(again, -3 * first, atol=1e-5)
