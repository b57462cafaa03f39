"""Transposed algebra convolutions (functional and AlgebraConvTranspose1d/2d/3d) against independent oracles:
torch's real transposed convolution with the block weight expanded from the oracle structure tensors
(tests/oracles.py, no runtime code), and torch's complex conv_transpose for C."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

import runtime.functional as AF
from runtime import load_algebra
from runtime.layers import AlgebraConvTranspose1d, AlgebraConvTranspose2d, AlgebraConvTranspose3d

from oracles import oracle_tensor
from test_functional import ALGEBRAS, FAST, METHODS, _to_complex, close

pytestmark = pytest.mark.usefixtures("one_thread")

TCONV = {1: AF.algebra_conv_transpose1d, 2: AF.algebra_conv_transpose2d, 3: AF.algebra_conv_transpose3d}
TORCH_TCONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
LAYERS = {1: AlgebraConvTranspose1d, 2: AlgebraConvTranspose2d, 3: AlgebraConvTranspose3d}


def oracle_conv_transpose(x, w, b, name, stride, padding, output_padding, groups, dilation):
    """Real transposed convolution with the expanded block weight: per tap, element (i, o) is the d x d
    matrix of left multiplication by w_io, L(w)[t, s] = sum_a T[a, s, t] w_a, placed at rows i*d+s and
    columns o*d+t of torch's (C_in*d, C_out/groups*d, *k) weight."""
    T = torch.as_tensor(oracle_tensor(name).astype(np.float64))
    d = T.shape[0]
    cin, cog = w.shape[:2]
    k = w.shape[2:-1]
    real = torch.einsum("ast,io...a->isot...", T, w.double()).reshape(cin * d, cog * d, *k)
    return TORCH_TCONV[len(k)](x.double(), real, None if b is None else b.double().reshape(-1), stride, padding,
                               output_padding, groups, dilation)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("name", ALGEBRAS)
@FAST
@given(data=st.data())
def test_conv_transpose_matches_block_oracle(name, nd, method, data):
    d = load_algebra(name).dim
    groups = data.draw(st.sampled_from([1, 2]))
    cin = groups * data.draw(st.integers(1, 2))
    cout = groups * data.draw(st.integers(1, 2))
    k = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    dil = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    opad = tuple(data.draw(st.integers(0, max(s, dl) - 1)) for s, dl in zip(stride, dil))
    pad = tuple(data.draw(st.integers(0, (dl * (kk - 1)) // 2)) for kk, dl in zip(k, dil))
    size = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    bias = data.draw(st.booleans())
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2 ** 16)))
    x = torch.randn(2, cin * d, *size, generator=g, dtype=torch.float64)
    w = torch.randn(cin, cout // groups, *k, d, generator=g, dtype=torch.float64)
    b = torch.randn(cout, d, generator=g, dtype=torch.float64) if bias else None
    y = TCONV[nd](x, w, b, name, stride, pad, opad, groups, dil, method)
    close(y, oracle_conv_transpose(x, w, b, name, stride, pad, opad, groups, dil), scale=math.prod(k) * cin)


@pytest.mark.parametrize("method", METHODS)
def test_complex_matches_torch_complex_conv_transpose(method):
    torch.manual_seed(2)
    for nd in (1, 2, 3):
        sp = (5, 4, 3)[:nd]
        x = torch.randn(2, 4 * 2, *sp, dtype=torch.float64)
        w = torch.randn(4, 3, *([3] * nd), 2, dtype=torch.float64)             # C_in=4, C_out=6, groups=2
        b = torch.randn(6, 2, dtype=torch.float64)
        ref = TORCH_TCONV[nd](_to_complex(x, 4), torch.view_as_complex(w), torch.view_as_complex(b), stride=2,
                              padding=1, output_padding=1, groups=2)
        y = TCONV[nd](x, w, b, "C", 2, 1, 1, 2, 1, method)
        close(_to_complex(y, 6), ref, scale=30)


@pytest.mark.parametrize("method", ["block", "fold", "bilinear"])
@pytest.mark.parametrize("name", ALGEBRAS)
def test_gradcheck_conv_transpose(name, method):
    d = load_algebra(name).dim
    torch.manual_seed(4)
    nd = 2 if d <= 4 else 1
    x = torch.randn(1, 2 * d, *([3] * nd), dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, *([2] * nd), d, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, d, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w, b: TCONV[nd](x, w, b, name, 2, 1, 1, 2, 1, method)  # noqa: E731
    assert gradcheck(fn, (x, w, b), fast_mode=True)


@pytest.mark.parametrize("method", ["block", "fold", "bilinear"])
@pytest.mark.parametrize("name", ["H", "M2R", "M2C"])
def test_conv_transpose_gradients_match_oracle(name, method):
    """Analytic gradients of every path equal autograd through the oracle, including a second backward."""
    d = load_algebra(name).dim
    torch.manual_seed(5)
    x = torch.randn(2, 3 * d, 4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 2, 3, d, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, d, dtype=torch.float64, requires_grad=True)
    y = AF.algebra_conv_transpose2d(x, w, b, name, (2, 1), (0, 1), (1, 0), 1, 1, method)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, w, b), g, retain_graph=True)
    ref = torch.autograd.grad(oracle_conv_transpose(x, w, b, name, (2, 1), (0, 1), (1, 0), 1, 1), (x, w, b), g)
    for a, r in zip(grads, ref):
        close(a, r, scale=50)
    for a, r in zip(torch.autograd.grad(y, (x, w, b), g), ref):
        close(a, r, scale=50)


def test_tied_weight_serves_conv_and_transposed_conv():
    """One weight used by a conv and a transposed conv (tied autoencoder): the cached expansions / scheme
    combinations of one must not leak into the other."""
    torch.manual_seed(6)
    w = torch.randn(3, 2, 3, 4, dtype=torch.float64)
    x = torch.randn(1, 2 * 4, 7, dtype=torch.float64)
    for method in ("block", "fold", "bilinear"):
        with torch.no_grad():
            for _ in range(2):
                z = AF.algebra_conv1d(x, w, None, "M2R", 2, 1, method=method)
                r = AF.algebra_conv_transpose1d(z, w, None, "M2R", 2, 1, 0, 1, 1, method)
        close(r, oracle_conv_transpose(z, w, None, "M2R", 2, 1, 0, 1, 1), scale=20)


def test_layer_shapes_output_size_and_repr():
    torch.manual_seed(0)
    up = AlgebraConvTranspose2d(4, 6, 3, "H", stride=2, padding=1, output_padding=1, groups=2, dtype=torch.float64)
    assert up.weight.shape == (4, 3, 3, 3, 4) and up.bias.shape == (6, 4)
    with torch.no_grad():
        up.bias.normal_()
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
    y = up(x)
    assert y.shape == (2, 24, 10, 8)
    close(y, oracle_conv_transpose(x, up.weight, up.bias, "H", 2, 1, 1, 2, 1), scale=40)
    # output_size picks output_padding like torch (spatial sizes or the full shape), unbatched inputs work
    ref = torch.nn.ConvTranspose2d(16, 24, 3, stride=2, padding=1, output_padding=1)
    for size in [(9, 7), (10, 8), (2, 24, 9, 8)]:
        assert up(x, output_size=size).shape == ref(x.float(), output_size=size).shape
    close(up(x[0], output_size=(9, 7)), up(x, output_size=(9, 7))[0])
    with pytest.raises(ValueError, match=r"output size.*not reachable.*\[9, 10\]"):
        up(x, output_size=(11, 8))
    r = repr(up)
    assert "algebra=H" in r and "output_padding=(1, 1)" in r and "groups=2" in r
    for nd, cls in LAYERS.items():
        layer = cls(2, 3, 2, "C", stride=2, bias=False)
        assert layer.weight.shape == (2, 3, *([2] * nd), 2) and layer.bias is None
        assert layer(torch.randn(1, 4, *([3] * nd))).shape == (1, 6, *([6] * nd))


def test_layer_default_init_keeps_the_variance():
    """Unit-variance inputs give outputs of about unit variance (fan_in = in // groups * taps / stride)."""
    torch.manual_seed(1)
    up = AlgebraConvTranspose2d(32, 32, 4, "H", stride=2, padding=1)
    y = up(torch.randn(4, 32 * 4, 8, 8))
    assert 0.6 < y.var().item() < 1.6


def test_layer_errors():
    with pytest.raises(ValueError, match="padding_mode='zeros'|padding_mode=\"zeros\""):
        AlgebraConvTranspose2d(2, 2, 3, "H", padding_mode="reflect")
    with pytest.raises(ValueError, match="output_padding.*smaller than either stride"):
        AlgebraConvTranspose1d(2, 2, 3, "H", stride=2, output_padding=2)
    with pytest.raises(ValueError, match="int or a tuple"):
        AlgebraConvTranspose1d(2, 2, 3, "H", padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        AlgebraConvTranspose1d(3, 2, 3, "H", groups=2)
    with pytest.raises(TypeError, match="4th argument is the algebra"):
        AlgebraConvTranspose1d(2, 2, 3, 2)
    up = AlgebraConvTranspose1d(2, 2, 3, "H")
    with pytest.raises(ValueError, match=r"expected 8 input channels \(2 elements x d=4\), got 12"):
        up(torch.randn(1, 12, 5))
    with pytest.raises(ValueError, match="not a multiple of the algebra dimension"):
        up(torch.randn(1, 7, 5))
    w = torch.randn(2, 2, 3, 4)
    with pytest.raises(ValueError, match=r"bias must have shape \(out_channels, d\) = \(4, 4\)"):
        AF.algebra_conv_transpose1d(torch.randn(1, 8, 5), w, torch.randn(2, 4), "H", groups=2)
    with pytest.raises(ValueError, match="empty output size"):
        AF.algebra_conv_transpose1d(torch.randn(1, 8, 1), w, None, "H", padding=3)


def test_pruning_keeps_transposed_convs_dense_and_correct():
    """Element masks apply to the transposed weight; there is no block-sparse form, so to_block_sparse
    refuses and convert_to_block_sparse leaves the layer as it is."""
    from runtime import sparsity as sp

    torch.manual_seed(7)
    model = torch.nn.Sequential(AlgebraConvTranspose1d(4, 3, 3, "H", stride=2, dtype=torch.float64))
    sp.prune_elements_(model, 0.5)
    up = model[0]
    assert int((up.weight == 0).all(-1).sum()) == 18
    x = torch.randn(2, 16, 5, dtype=torch.float64)
    close(up(x), oracle_conv_transpose(x, up.weight, up.bias, "H", 2, 0, 0, 1, 1), scale=12)
    with pytest.raises(ValueError, match="transposed convolution, which has no block-sparse form"):
        sp.to_block_sparse(up)
    assert sp.convert_to_block_sparse(model)[0] is up
