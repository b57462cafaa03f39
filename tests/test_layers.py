"""runtime.layers AlgebraLinear / AlgebraConv1d/2d/3d: torch-like modules over an algebra."""
from __future__ import annotations

import copy
import io
import math
import pickle

import pytest
import torch
from torch import nn

import runtime.functional as AF
from runtime import methods
from runtime import AlgebraNotBuiltError, load_algebra
from runtime.layers import AlgebraConv1d, AlgebraConv2d, AlgebraConv3d, AlgebraLinear

from test_functional import ALGEBRAS, oracle_conv, oracle_linear

METHODS = ["block", "fold", "bilinear", "auto", None]


# Tiny tensors: one intra-op thread is faster, and on a loaded machine each parallel region of the float64
# slow convolution path (one per group) can wait for a time slice.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ALGEBRAS)
def test_layers_match_oracle(name, method):
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(0)
    lin = AlgebraLinear(5, 3, name, method=method, dtype=torch.float64)
    x = torch.randn(2, 4, 5 * d, dtype=torch.float64)
    assert torch.allclose(lin(x), oracle_linear(x, lin.weight, lin.bias, A), atol=1e-10)
    convs = [(AlgebraConv1d, (9,)), (AlgebraConv2d, (6, 5)), (AlgebraConv3d, (4, 5, 3))]
    for cls, sp in convs:
        nd = len(sp)
        conv = cls(4, 6, 3, name, stride=2, padding=1, dilation=1, groups=2, method=method, dtype=torch.float64)
        with torch.no_grad():
            conv.bias.normal_()
        x = torch.randn(3, 4 * d, *sp, dtype=torch.float64)
        ref = oracle_conv(x, conv.weight, conv.bias, A, (2,) * nd, (1,) * nd, (1,) * nd, 2)
        assert torch.allclose(conv(x), ref, atol=1e-10), cls.__name__


def test_shapes_parameters_and_repr():
    lin = AlgebraLinear(8, 16, "H")
    assert lin.weight.shape == (16, 8, 4) and lin.bias.shape == (16, 4)
    assert lin(torch.randn(3, 32)).shape == (3, 64)
    assert lin(torch.randn(32)).shape == (64,)
    assert lin(torch.randn(2, 5, 32)).shape == (2, 5, 64)
    r = repr(lin)
    assert "algebra=H" in r and "method=default (auto)" in r and "in_features=8" in r
    assert "method=bilinear" in repr(AlgebraLinear(2, 2, "C", method="bilinear", bias=False))
    conv = AlgebraConv2d(4, 8, 3, algebra="M2R", stride=2, padding=1, groups=2, bias=False, method="fold")
    assert conv.weight.shape == (8, 2, 3, 3, 4) and conv.bias is None
    assert conv(torch.randn(1, 16, 9, 9)).shape == (1, 32, 5, 5)
    r = repr(conv)
    assert "algebra=M2R" in r and "method=fold" in r and "groups=2" in r and "bias=False" in r
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1)
    assert AlgebraConv1d(2, 2, 3, "H", padding="same")(torch.randn(1, 8, 7)).shape == (1, 8, 7)
    c3 = AlgebraConv3d(1, 2, (1, 2, 3), "C", padding_mode="circular", padding=(0, 1, 1))
    assert c3(torch.randn(2, 2, 3, 4, 5)).shape == (2, 4, 3, 5, 5)
    A = load_algebra("C")
    assert AlgebraLinear(1, 1, A).algebra is A
    assert AlgebraLinear(1, 1, "C").effective_method == "auto"


def test_state_dict_round_trip_and_pickling():
    torch.manual_seed(1)
    a = AlgebraLinear(3, 4, "H", method="bilinear")
    b = AlgebraLinear(3, 4, "H", method="block")
    assert set(a.state_dict()) == {"weight", "bias"}
    x = torch.randn(5, 12)
    a(x)                                  # fills nothing persistent; caches are keyed on the weight
    b.load_state_dict(a.state_dict())
    assert torch.allclose(a(x), b(x), atol=1e-5)
    for c in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        assert c.algebra.name == "H" and c.method == "bilinear"
        assert torch.allclose(c(x), a(x))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    c = AlgebraLinear(3, 4, "H")
    c.load_state_dict(torch.load(buf))
    assert torch.allclose(c(x), a(x), atol=1e-5)
    conv = AlgebraConv2d(2, 2, 3, "M3R")
    conv2 = copy.deepcopy(conv)
    xi = torch.randn(1, 18, 5, 5)
    assert torch.allclose(conv(xi), conv2(xi))


@pytest.mark.parametrize("method", ["block", "fold", "bilinear", "auto"])
def test_to_dtype_and_inference_cache(method):
    torch.manual_seed(2)
    lin = AlgebraLinear(6, 5, "M2R", method=method)
    x = torch.randn(4, 24)
    y32 = lin(x)
    lin64 = copy.deepcopy(lin).to(torch.float64)
    assert lin64.weight.dtype == torch.float64
    y64 = lin64(x.double())
    assert y64.dtype == torch.float64
    assert torch.allclose(y64.float(), y32, atol=1e-5)
    lin.eval()
    with torch.no_grad():
        first = lin(x)
        with torch.no_grad():
            lin.weight.add_(1.0)
        second = lin(x)
    assert not torch.allclose(first, second)
    assert torch.allclose(second.double(), oracle_linear(x, lin.weight, lin.bias, load_algebra("M2R")), atol=1e-4)
    with torch.inference_mode():
        assert torch.allclose(lin(x), second, atol=1e-5)


def test_reset_parameters_is_variance_preserving_and_overridable():
    torch.manual_seed(3)
    for name in ("C", "H", "M2R", "Cross3", "M4R"):
        d = load_algebra(name).dim
        lin = AlgebraLinear(256, 256, name, bias=False)
        x = torch.randn(512, 256 * d)
        with torch.no_grad():
            v = lin(x).var().item()
        assert 0.7 < v < 1.4, (name, v)
        conv = AlgebraConv2d(32, 32, 3, name, bias=False)
        with torch.no_grad():
            v = conv(torch.randn(8, 32 * d, 8, 8)).var().item()
        assert 0.7 < v < 1.4, (name, v)
    seen = []

    def my_init(weight, algebra):
        seen.append((tuple(weight.shape), algebra.name))
        with torch.no_grad():
            weight.fill_(0.5)
    lin = AlgebraLinear(2, 3, "H", init=my_init)
    assert seen == [((3, 2, 4), "H")] and torch.all(lin.weight == 0.5) and torch.all(lin.bias == 0)
    from runtime import init as rinit
    conv = AlgebraConv2d(4, 4, 3, "Dual", init=rinit.kaiming_normal_)
    assert conv.weight.std() > 0


@pytest.mark.parametrize("method", ["block", "fold", "bilinear", "auto"])
def test_training_reduces_loss(method):
    torch.manual_seed(4)
    model = nn.Sequential(AlgebraConv2d(1, 4, 3, "M2R", padding=1, method=method), nn.ReLU(), nn.Flatten(),
                          AlgebraLinear(4 * 5 * 5, 2, "M2R", method=method))
    x = torch.randn(16, 4, 5, 5)
    target = torch.randn(16, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = (model(x) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_methods_give_the_same_training_step():
    torch.manual_seed(5)
    base = AlgebraLinear(6, 4, "H", dtype=torch.float64)
    x = torch.randn(7, 24, dtype=torch.float64)
    grads = {}
    for method in ("block", "fold", "bilinear"):
        layer = AlgebraLinear(6, 4, "H", method=method, dtype=torch.float64)
        layer.load_state_dict(base.state_dict())
        layer(x).sin().sum().backward()
        grads[method] = (layer.weight.grad, layer.bias.grad)
    for m in ("fold", "bilinear"):
        assert torch.allclose(grads[m][0], grads["block"][0], atol=1e-10)
        assert torch.allclose(grads[m][1], grads["block"][1], atol=1e-10)


def test_global_and_per_layer_method(monkeypatch):
    used = []
    real = methods.get

    def spy(name):
        used.append(name)
        return real(name)
    monkeypatch.setattr(methods, "get", spy)
    fixed = AlgebraLinear(2, 2, "M2R", method="fold")
    free = AlgebraLinear(2, 2, "M2R")
    x = torch.randn(1, 8)
    with AF.default_method("bilinear"):
        fixed(x)
        free(x)
        assert used[-2:] == ["fold", "bilinear"]
        with AF.force_method("block"):
            fixed(x)
            free(x)
            assert used[-2:] == ["block", "block"]
    free(x)
    assert used[-1] in ("block", "fold", "bilinear")


def test_layer_errors_name_the_layer_and_the_fix():
    lin = AlgebraLinear(8, 16, "H")
    with pytest.raises(ValueError, match=r"AlgebraLinear\(in_features=8, out_features=16, algebra=H\): input has "
                                         r"30 features.*not a multiple of the algebra dimension d=4"):
        lin(torch.randn(2, 30))
    with pytest.raises(ValueError, match=r"AlgebraLinear\(.*\): expected 32 input features \(8 elements x d=4\), "
                                         r"got 36 \(9 elements\).*in_features=9"):
        lin(torch.randn(2, 36))
    with pytest.raises(TypeError, match=r"AlgebraLinear\(.*\): input dtype torch.float64 does not match weight "
                                        r"dtype torch.float32.*layer.to"):
        lin(torch.randn(2, 32, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"floating-point"):
        lin(torch.ones(2, 32, dtype=torch.long))
    with pytest.raises(RuntimeError, match=r"AlgebraLinear\(.*\): input is on meta but the weight is on cpu"):
        lin(torch.randn(2, 32, device="meta"))
    with pytest.raises(AlgebraNotBuiltError, match=r"AlgebraLinear: algebra 'Sedenion' is not built.*"
                                                   r"python -m codegen build"):
        AlgebraLinear(2, 2, "Sedenion")
    with pytest.raises(AlgebraNotBuiltError, match=r"AlgebraConv2d: algebra 'Sedenion' is not built"):
        AlgebraConv2d(2, 2, 3, algebra="Sedenion")
    conv = AlgebraConv2d(3, 4, 3, "M2R")
    with pytest.raises(ValueError, match=r"AlgebraConv2d\(in_channels=3, out_channels=4, kernel_size=\(3, 3\), "
                                         r"algebra=M2R\): input has 10 channels.*not a multiple"):
        conv(torch.randn(1, 10, 5, 5))
    with pytest.raises(ValueError, match=r"expected 12 input channels \(3 elements x d=4\), got 16 \(4 elements\)"
                                         r".*in_channels=4"):
        conv(torch.randn(1, 16, 5, 5))
    with pytest.raises(ValueError, match=r"AlgebraConv2d\(.*\): input must be \(N, C_in\*d, \*spatial\)"):
        conv(torch.randn(1, 12, 5, 5, 5))
    with pytest.raises(TypeError, match=r"4th argument is the algebra.*algebra='H', stride=2"):
        AlgebraConv2d(4, 8, 3, 2)
    with pytest.raises(ValueError, match="divisible by groups"):
        AlgebraConv2d(3, 4, 3, "H", groups=2)
    with pytest.raises(ValueError, match="unknown method 'fastest'"):
        AlgebraLinear(2, 2, "H", method="fastest")
    with pytest.raises(ValueError, match="padding_mode"):
        AlgebraConv1d(2, 2, 3, "H", padding_mode="mirror")
    with pytest.raises(ValueError, match="positive int"):
        AlgebraLinear(0, 2, "H")


def test_r_algebra_equals_torch_layers():
    """For R (d = 1) the layers are exactly torch.nn.Linear / Conv with the same parameters."""
    torch.manual_seed(6)
    for method in ("block", "fold", "bilinear"):
        lin = AlgebraLinear(7, 3, "R", method=method)
        ref = nn.Linear(7, 3)
        with torch.no_grad():
            ref.weight.copy_(lin.weight[..., 0])
            ref.bias.copy_(lin.bias[:, 0])
        x = torch.randn(4, 7)
        assert torch.allclose(lin(x), ref(x), atol=1e-6)
        for mode in ("zeros", "reflect", "replicate", "circular"):
            conv = AlgebraConv2d(4, 6, (3, 2), "R", stride=(1, 2), padding=(1, 1), dilation=(2, 1), groups=2,
                                 padding_mode=mode, method=method)
            refc = nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 1), dilation=(2, 1), groups=2,
                             padding_mode=mode)
            with torch.no_grad():
                refc.weight.copy_(conv.weight[..., 0])
                refc.bias.copy_(conv.bias[:, 0])
            xi = torch.randn(2, 4, 8, 9)
            assert torch.allclose(conv(xi), refc(xi), atol=1e-5), mode
        conv = AlgebraConv1d(2, 2, 4, "R", padding="same", method=method)
        refc = nn.Conv1d(2, 2, 4, padding="same")
        with torch.no_grad():
            refc.weight.copy_(conv.weight[..., 0])
            refc.bias.copy_(conv.bias[:, 0])
        xi = torch.randn(3, 2, 10)
        assert torch.allclose(conv(xi), refc(xi), atol=1e-6)


def test_bfloat16_parameters_without_autocast():
    torch.manual_seed(7)
    for method in ("block", "fold", "bilinear"):
        lin = AlgebraLinear(16, 8, "M2R", method=method)
        x = torch.randn(4, 64)
        ref = lin(x)
        lb = copy.deepcopy(lin).to(torch.bfloat16)
        y = lb(x.bfloat16())
        assert y.dtype == torch.bfloat16
        assert (y.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.05
        y.float().sum().backward()
        assert lb.weight.grad.dtype == torch.bfloat16


def test_flop_free_sanity_of_fan_in():
    conv = AlgebraConv2d(6, 4, (3, 5), "H", groups=2)
    s = AF.structure_scale("H")
    bound = math.sqrt(3.0 / (3 * 15 * s))
    assert conv.weight.abs().max() <= bound + 1e-6
