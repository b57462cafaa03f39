"""The CPU scratch pool (runtime/methods/workspace.py) under interleaved layers, sizes, batches and autograd modes.

Every layer call is compared with the same call made alone in a fresh state (pool emptied, weight caches
cleared), so a buffer handed out while still in use, or with the wrong size, or an inference tensor leaking out
of torch.inference_mode(), shows up as a wrong number or an exception.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.methods import workspace as ws
from runtime.methods.weight_cache import clear_weight_cache
from runtime.layers import AlgebraConv1d, AlgebraConv2d, AlgebraLinear
from runtime.models import TransformerLM

pytestmark = pytest.mark.usefixtures("one_thread")

MODES = {"inference": torch.inference_mode, "no_grad": torch.no_grad, "grad": contextlib.nullcontext}


def _fresh_state() -> None:
    ws.empty_workspace()
    clear_weight_cache()


def _run(layer, x: torch.Tensor, mode: str):
    """Output (and, in grad mode, input and weight gradients for a fixed random cotangent)."""
    with MODES[mode]():
        if mode != "grad":
            return (layer(x).clone(),)
        xg = x.clone().requires_grad_()
        y = layer(xg)
        cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=y.dtype)
        gx, gw = torch.autograd.grad(y, (xg, layer.weight), cot)
        return y.detach(), gx, gw


_LAYERS = {"linear": AlgebraLinear, "conv1d": AlgebraConv1d, "conv2d": AlgebraConv2d}


def _make(kind: str, algebra: str, cin: int, cout: int, method: str, seed: int):
    torch.manual_seed(seed)
    if kind == "linear":
        return AlgebraLinear(cin, cout, algebra=algebra, method=method)
    return _LAYERS[kind](cin, cout, 3, padding=1, algebra=algebra, method=method)


def _input(kind: str, layer, batch: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = layer.weight.shape[1] * layer.weight.shape[-1]
    shape = {"linear": (batch, c), "conv1d": (batch, c, size), "conv2d": (batch, c, size, size)}[kind]
    return torch.randn(shape, generator=g)


call = st.tuples(st.sampled_from(["linear", "conv1d", "conv2d"]), st.sampled_from(["M2C", "H", "M3R", "C"]),
                 st.integers(1, 5), st.integers(1, 5), st.sampled_from(["fold", "bilinear", "auto"]),
                 st.integers(1, 4), st.integers(2, 6), st.sampled_from(list(MODES)))


@settings(max_examples=15, deadline=None)
@given(st.lists(call, min_size=2, max_size=7), st.integers(0, 2**16))
def test_interleaved_calls_match_calls_made_alone(calls, seed):
    expected = []
    for i, (kind, alg, cin, cout, method, batch, size, mode) in enumerate(calls):
        _fresh_state()
        layer = _make(kind, alg, cin, cout, method, seed + i)
        expected.append(_run(layer, _input(kind, layer, batch, size, seed + i), mode))
    _fresh_state()
    layers = [_make(kind, alg, cin, cout, method, seed + i)
              for i, (kind, alg, cin, cout, method, *_ ) in enumerate(calls)]
    for _ in range(2):                              # twice: the second round reuses what the first pooled
        for i, (kind, alg, cin, cout, method, batch, size, mode) in enumerate(calls):
            got = _run(layers[i], _input(kind, layers[i], batch, size, seed + i), mode)
            for a, b in zip(got, expected[i]):
                assert not a.is_inference() or mode == "inference"
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_m2c_batch1_inference_after_several_shapes():
    """Regression (a reported failure): M2C layers on the fold / bilinear paths under inference_mode, after a process has run
    a few shapes (the pool once handed out a buffer of the wrong size: "shape '[1, 2, 724, 2, 2]' is invalid")."""
    torch.manual_seed(0)
    layers = [AlgebraLinear(n, n, algebra="M2C", method=m) for n in (181, 64, 96) for m in ("fold", "bilinear")]
    for batch in (1, 3, 1, 8, 1):
        for layer in layers:
            x = torch.randn(batch, layer.weight.shape[1] * 8)
            with torch.inference_mode():
                y = layer(x)
            with torch.no_grad():
                ref = torch.nn.functional.linear(x, layer_block_weight(layer), layer.bias.reshape(-1))
            torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)


def layer_block_weight(layer) -> torch.Tensor:
    """The real (out*d, in*d) matrix of left-multiplication blocks, from the structure tensor."""
    T = layer.algebra.structure_tensor(layer.weight.dtype)                # (a, j, k)
    w = layer.weight.detach()
    O, I, d = w.shape
    return torch.einsum("oia,ajk->okij", w, T).reshape(O * d, I * d)


def test_inference_buffers_never_leak_out_of_inference_mode():
    """A buffer first used under inference_mode is later written outside it ("Inplace update to inference tensor
    outside InferenceMode"), and cached weight combinations made under it are later saved for backward."""
    torch.manual_seed(0)
    for method in ("fold", "bilinear"):
        _fresh_state()
        layer = AlgebraConv2d(3, 3, 3, padding=1, algebra="M2C", method=method)
        layer.weight.requires_grad_(False)           # the weight combinations are cached across modes
        x = torch.randn(2, 24, 5, 5)
        with torch.inference_mode():
            ref = layer(x)
        xg = x.clone().requires_grad_()
        y = layer(xg)
        y.sum().backward()
        torch.testing.assert_close(y.detach(), ref)
        assert not y.is_inference() and xg.grad is not None


def test_transformer_greedy_decoding_with_a_growing_prefix():
    """Regression (a reported failure): greedy decoding through the full forward, one token longer each step, failed at the
    second step under inference_mode.  Each step's logits must equal those of the same forward in no_grad."""
    torch.manual_seed(0)
    lm = TransformerLM(vocab_size=96, d_model=32, n_layers=2, n_heads=4, algebra="M2C", max_len=64).eval()
    tokens = torch.randint(0, 96, (1, 3))
    for _ in range(6):
        with torch.inference_mode():
            logits = lm(tokens)
        with torch.no_grad():
            ref = lm(tokens.clone())
        torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert tokens.shape == (1, 9)


def test_give_accepts_only_buffers_on_loan():
    """Giving back a tensor twice, or one that did not come from take, never puts memory in use into the pool."""
    _fresh_state()
    a = ws.take(1000, torch.float32, torch.device("cpu"))
    ws.give(a.view(10, 100))
    ws.give(a)                                         # twice: ignored
    b = ws.take(1000, torch.float32, torch.device("cpu"))
    c = ws.take(1000, torch.float32, torch.device("cpu"))
    assert b.untyped_storage().data_ptr() != c.untyped_storage().data_ptr()
    mine = torch.randn(1000)
    ws.give(mine)                                      # not from the pool: ignored
    d = ws.take(1000, torch.float32, torch.device("cpu"))
    assert d.untyped_storage().data_ptr() != mine.untyped_storage().data_ptr()
    assert b.shape == c.shape == d.shape == (1000,)
    with torch.inference_mode():
        e = ws.take(1000, torch.float32, torch.device("cpu"))
        ws.give(e)
    f = ws.take(900, torch.float32, torch.device("cpu"))        # the same memory, as a normal tensor
    assert not f.is_inference() and f.shape == (900,)
    f.fill_(1.0)
