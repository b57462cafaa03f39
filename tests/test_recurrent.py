"""AlgebraRNN / AlgebraGRU / AlgebraLSTM and their cells.

Oracles: with algebra="R" torch.nn.RNN / GRU / LSTM (and cells) given the same weights; for every algebra
the real torch layer of width hidden_size*d whose weights are the block matrices of left multiplication,
expanded from the oracle structure tensors (gates act per component, so the two are the same function).
"""
from __future__ import annotations

import copy
import io
import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd import gradcheck
from torch.nn.utils.rnn import pack_padded_sequence

import runtime.functional as AF
from runtime.methods import block
from runtime import load_algebra
from runtime.layers import (AlgebraGRU, AlgebraGRUCell, AlgebraLSTM, AlgebraLSTMCell, AlgebraRNN,
                            AlgebraRNNCell)

from oracles import oracle_tensor
from test_functional import ALGEBRAS, close

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
LAYERS = {"RNN": (AlgebraRNN, nn.RNN), "GRU": (AlgebraGRU, nn.GRU), "LSTM": (AlgebraLSTM, nn.LSTM)}
CELLS = {"RNN": (AlgebraRNNCell, nn.RNNCell), "GRU": (AlgebraGRUCell, nn.GRUCell),
         "LSTM": (AlgebraLSTMCell, nn.LSTMCell)}


def _r_state_dict(ref: nn.Module) -> dict:
    """A torch layer's weights as algebra="R" parameters (a trailing component dimension of size 1)."""
    return {k: v.unsqueeze(-1) for k, v in ref.state_dict().items()}


def _random_state(shape, lstm, batched):
    """h (or (h, c) for LSTM) of `shape`; batched=False drops dim 1 (the batch of a layer's state)."""
    h = torch.randn(shape, dtype=F64)
    h = h if batched else h[:, 0]
    return (h, torch.randn_like(h)) if lstm else h


def _assert_outputs_equal(got, ref, scale=1.0):
    if isinstance(ref, tuple):
        assert isinstance(got, tuple) and len(got) == len(ref)
        for a, b in zip(got, ref):
            _assert_outputs_equal(a, b, scale)
    else:
        close(got, ref, scale)


# ------------------------------------------------------------------------------- R equals torch.nn
@pytest.mark.parametrize("method", ["block", "bilinear", "auto"])
@pytest.mark.parametrize("kind", ["RNN", "RNN_relu", "GRU", "LSTM"])
def test_r_layers_equal_torch(kind, method):
    torch.manual_seed(0)
    base = kind.split("_")[0]
    extra = {"nonlinearity": "relu"} if kind == "RNN_relu" else {}
    cls, tcls = LAYERS[base]
    for num_layers, bidirectional, batch_first in itertools.product([1, 2], [False, True], [False, True]):
        ref = tcls(3, 4, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=F64,
                   **extra)
        alg = cls(3, 4, "R", num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                  method=method, dtype=F64, **extra)
        assert [n for n, _ in alg.named_parameters()] == [n for n, _ in ref.named_parameters()]
        alg.load_state_dict(_r_state_dict(ref))
        x = torch.randn(*((2, 5) if batch_first else (5, 2)), 3, dtype=F64, requires_grad=True)
        D = 2 if bidirectional else 1
        hx = _random_state((D * num_layers, 2, 4), base == "LSTM", True)
        for args in ((x,), (x, hx)):
            _assert_outputs_equal(alg(*args), ref(*args))
        # unbatched
        xu = x[0] if batch_first else x[:, 0]
        hu = _random_state((D * num_layers, 2, 4), base == "LSTM", False)
        _assert_outputs_equal(alg(xu, hu), ref(xu, hu))
        # gradients (parameters and input) equal torch's
        out, ref_out = alg(x, hx)[0], ref(x, hx)[0]
        g = torch.randn_like(out)
        got = torch.autograd.grad(out, [x, *alg.parameters()], g)
        want = torch.autograd.grad(ref_out, [x, *ref.parameters()], g)
        for a, b in zip(got, want):
            close(a.reshape(b.shape), b, scale=10)


@pytest.mark.parametrize("kind", ["RNN", "RNN_relu", "GRU", "LSTM"])
def test_r_cells_equal_torch(kind):
    torch.manual_seed(1)
    base = kind.split("_")[0]
    extra = {"nonlinearity": "relu"} if kind == "RNN_relu" else {}
    cls, tcls = CELLS[base]
    for bias in (True, False):
        ref = tcls(3, 4, bias=bias, dtype=F64, **extra)
        alg = cls(3, 4, "R", bias=bias, dtype=F64, **extra)
        assert [n for n, _ in alg.named_parameters()] == [n for n, _ in ref.named_parameters()]
        alg.load_state_dict(_r_state_dict(ref))
        x = torch.randn(2, 3, dtype=F64)
        hx = _random_state((2, 4), base == "LSTM", True)
        _assert_outputs_equal(alg(x), ref(x))
        _assert_outputs_equal(alg(x, hx), ref(x, hx))
        hu = tuple(h[0] for h in hx) if base == "LSTM" else hx[0]
        _assert_outputs_equal(alg(x[0], hu), ref(x[0], hu))


# ---------------------------------------------------------------- every algebra: the block-weight oracle
def _block(w: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """(O, I, d) algebra weight -> the (O*d, I*d) real matrix of left multiplication, L(w)[t, s] = sum_a
    T[a, s, t] w_a per element."""
    O, I, d = w.shape
    return torch.einsum("ast,oia->otis", T, w).reshape(O * d, I * d)


def _real_twin(alg: nn.Module, tcls, name: str, **kw) -> nn.Module:
    """The real torch layer with hidden_size*d units whose weights are alg's block matrices."""
    T = torch.as_tensor(oracle_tensor(name).astype(np.float64))
    d = T.shape[0]
    ref = tcls(alg.input_size * d, alg.hidden_size * d, dtype=F64, **kw)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            a = getattr(alg, n)
            p.copy_(_block(a, T) if n.startswith("weight") else a.reshape(-1))
    return ref


@pytest.mark.parametrize("name", ALGEBRAS)
@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_every_algebra_equals_the_real_layer_with_block_weights(kind, name):
    d = load_algebra(name).dim
    torch.manual_seed(2)
    cls, tcls = LAYERS[kind]
    ccls, tccls = CELLS[kind]
    for method in ("block", "fold", "bilinear", "auto"):
        alg = cls(2, 2, name, num_layers=2, bidirectional=True, method=method, dtype=F64)
        ref = _real_twin(alg, tcls, name, num_layers=2, bidirectional=True)
        x = torch.randn(3, 2, 2 * d, dtype=F64)
        hx = _random_state((4, 2, 2 * d), kind == "LSTM", True)
        _assert_outputs_equal(alg(x, hx), ref(x, hx), scale=4)
        cell = ccls(2, 2, name, method=method, dtype=F64)
        cref = _real_twin(cell, tccls, name)
        hx = _random_state((2, 2 * d), kind == "LSTM", True)
        _assert_outputs_equal(cell(x[0], hx), cref(x[0], hx), scale=4)


# ---------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("method", ["block", "fold", "bilinear"])
@pytest.mark.parametrize("name", ["H", "M2R"])
def test_gradcheck_recurrent(name, method):
    d = load_algebra(name).dim
    torch.manual_seed(3)
    lstm = AlgebraLSTM(1, 1, name, bidirectional=True, method=method, dtype=F64)
    gru = AlgebraGRUCell(1, 1, name, method=method, dtype=F64)
    x = torch.randn(2, 1, d, dtype=F64, requires_grad=True)
    h = torch.randn(2, 1, d, dtype=F64, requires_grad=True)
    c = torch.randn(2, 1, d, dtype=F64, requires_grad=True)
    params = list(lstm.parameters())
    names = [n for n, _ in lstm.named_parameters()]

    def f(x, h, c, *ps):            # parameters enter through functional_call so that gradcheck sees them
        out, (hn, cn) = torch.func.functional_call(lstm, dict(zip(names, ps)), (x, (h, c)))
        return out, hn, cn

    ps = [p.detach().clone().requires_grad_() for p in params]
    assert gradcheck(f, (x, h, c, *ps), fast_mode=True)
    names = [n for n, _ in gru.named_parameters()]
    gps = [p.detach().clone().requires_grad_() for p in gru.parameters()]
    g = lambda x, h, *ps: torch.func.functional_call(gru, dict(zip(names, ps)), (x, h))  # noqa: E731
    assert gradcheck(g, (x[0], h[0], *gps), fast_mode=True)


def test_hidden_projection_weight_is_expanded_once_per_forward(monkeypatch):
    """The per-step hidden projection reuses one block expansion per layer and direction (not one per step)."""
    calls = []
    real = block.expand
    monkeypatch.setattr(block, "expand", lambda w, Tb, *rest: calls.append(tuple(w.shape)) or real(w, Tb, *rest))
    lstm = AlgebraLSTM(2, 3, "H", method="block")
    lstm(torch.randn(6, 2, 8)).__getitem__(0).sum().backward()
    assert sorted(calls) == sorted([(12, 2, 4), (12, 3, 4)])              # input and hidden weight, once each
    calls.clear()
    with torch.no_grad():                                                  # inference: cached across calls
        lstm(torch.randn(6, 2, 8))
        lstm(torch.randn(6, 2, 8))
    assert len(calls) == 2


# ------------------------------------------------------------------------------------ behaviour
def test_shapes_names_repr_and_dropout():
    torch.manual_seed(4)
    lstm = AlgebraLSTM(2, 3, "H", num_layers=2, bidirectional=True, batch_first=True)
    assert lstm.weight_ih_l0.shape == (12, 2, 4) and lstm.weight_hh_l0_reverse.shape == (12, 3, 4)
    assert lstm.weight_ih_l1.shape == (12, 6, 4) and lstm.bias_ih_l1_reverse.shape == (12, 4)
    out, (h, c) = lstm(torch.randn(5, 7, 8))
    assert out.shape == (5, 7, 24) and h.shape == c.shape == (4, 5, 12)
    r = repr(lstm)
    assert "algebra=H" in r and "num_layers=2" in r and "bidirectional=True" in r and "batch_first=True" in r
    assert "nonlinearity='relu'" in repr(AlgebraRNN(2, 2, "C", nonlinearity="relu"))
    gru = AlgebraGRU(2, 2, "C", bias=False)
    assert [n for n, _ in gru.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    assert gru(torch.randn(3, 4))[0].shape == (3, 4)
    lstm.flatten_parameters()                                              # accepted, like nn.LSTM's
    buf = io.BytesIO()                                                     # pickles whole, deep-copies
    torch.save(lstm, buf)
    buf.seek(0)
    x = torch.randn(5, 7, 8)
    for twin in (torch.load(buf, weights_only=False), copy.deepcopy(lstm)):
        _assert_outputs_equal(twin(x), lstm(x))
    # dropout acts between layers in training only
    a = AlgebraGRU(2, 2, "H", num_layers=2, dropout=0.5)
    b = AlgebraGRU(2, 2, "H", num_layers=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 8)
    assert torch.equal(a.eval()(x)[0], b.eval()(x)[0])
    assert not torch.equal(a.train()(x)[0], b.train()(x)[0])
    with pytest.warns(UserWarning, match="dropout acts between recurrent layers"):
        AlgebraLSTM(2, 2, "H", dropout=0.3)


def test_errors_are_clear():
    lstm = AlgebraLSTM(2, 3, "H")
    x = torch.randn(4, 2, 8)
    packed = pack_padded_sequence(x, torch.tensor([4, 3]))
    with pytest.raises(TypeError, match="packed sequences are not supported"):
        lstm(packed)
    with pytest.raises(ValueError, match=r"input must have 8 features.*\(2 elements x d=4"):
        lstm(torch.randn(4, 2, 6))
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, 2, 12\)"):
        lstm(x, (torch.randn(1, 2, 8), torch.randn(1, 2, 12)))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\)"):
        lstm(x, torch.randn(1, 2, 12))
    with pytest.raises(ValueError, match="no time steps"):
        lstm(torch.randn(0, 2, 8))
    with pytest.raises(TypeError, match="3rd argument is the algebra"):
        AlgebraLSTM(2, 3, 2)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        AlgebraRNN(2, 3, "H", nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout must be a number in"):
        AlgebraGRU(2, 3, "H", num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        AlgebraGRUCell(2, 0, "H")
    cell = AlgebraLSTMCell(2, 3, "H")
    with pytest.raises(ValueError, match=r"c must have shape \(5, 12\)"):
        cell(torch.randn(5, 8), (torch.randn(5, 12), torch.randn(5, 8)))
