"""The device-agnostic layers, proven without a GPU: every layer, method, toolkit piece and model builder runs
on the `meta` device (shapes only), forward and backward, under a dispatch mode that fails the run when a
tensor on another device meets the input's tensors (a constant made on the CPU while the input is on a
GPU would do exactly that: a device error, or a silent host round trip), and, on a second call, when a
host tensor is still copied to the device (a constant that is not cached per device).

`DeviceGuard` sees every aten call (factories included): a call whose tensor arguments are on the input's
device and elsewhere (0-dim CPU scalars excepted: torch passes those by value on every device) is recorded
with the runtime frame that made it.  Tensors the runtime builds and uses on the CPU alone (host-side
index arithmetic) are allowed.
"""
from __future__ import annotations

import traceback

import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from runtime import functional as AF
from runtime import init as ainit
from runtime import layers as L
from runtime import load_algebra, sparsity
from runtime.models import convert, match_model, resnet, TransformerLM

META = torch.device("meta")
ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "RandH", "RandM4R"]
METHODS = ["block", "fold", "bilinear", "kernel", "auto"]


class DeviceGuard(TorchDispatchMode):
    """Record every aten call mixing tensors of `device` with non-scalar tensors of another device."""

    def __init__(self, device: torch.device = META):
        super().__init__()
        self.device = device
        self.violations: list[str] = []
        self.transfers: list[str] = []       # host tensors copied to the device (fine once, for a cached constant)
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls += 1
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        here = any(t.device == self.device for t in tensors)
        other = [t for t in tensors if t.device != self.device and t.dim() > 0]
        if here and other:
            self.violations.append(f"{func}: {[str(t.device) for t in other]} tensors meet {self.device} at {_where()}")
        out = func(*args, **kwargs)
        if tensors and not here and any(t.device == self.device for t in pytree.tree_leaves(out)
                                        if isinstance(t, torch.Tensor)):
            self.transfers.append(f"{func}: a tensor from {[str(t.device) for t in tensors]} copied to {self.device} "
                                  f"at {_where()}")
        return out


def _where() -> str:
    """The innermost runtime/ frame of the current stack."""
    frames = [f for f in traceback.extract_stack()[:-2] if "/runtime/" in f.filename]
    if not frames:
        return "outside runtime/"
    f = frames[-1]
    return f"{f.filename.split('/runtime/')[-1]}:{f.lineno} ({f.line})"


def run_on_meta(module: nn.Module, *inputs: torch.Tensor, backward: bool = True, forward=None):
    """Move `module` to meta, run it on meta `inputs` under DeviceGuard (and backward through every float output)."""
    module = module.to(META)
    ins = [x.to(META).requires_grad_(backward and x.is_floating_point()) for x in inputs]
    for attempt in range(2):                        # the second run: constants must come from the caches
        guard = DeviceGuard()
        with guard:
            out = (forward or module)(*ins)
            outs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.requires_grad]
            if backward and outs:
                torch.autograd.backward(outs, [torch.ones_like(t) for t in outs])
        assert guard.calls > 0 or not backward      # (eval-mode dropout is the identity: no aten call)
        assert not guard.violations, "\n".join(dict.fromkeys(guard.violations))
    assert not guard.transfers, "host-to-device copies on every call:\n" + "\n".join(dict.fromkeys(guard.transfers))
    for t in pytree.tree_leaves(out):
        if isinstance(t, torch.Tensor):
            assert t.device == META, f"an output is on {t.device}"
    return out


# ------------------------------------------------------------------------------------------ the layers
def layer_cases(alg: str):
    d = load_algebra(alg).dim
    x1 = torch.randn(3, 5 * d)
    x2 = torch.randn(2, 4 * d, 6, 5)
    cases = {
        "Linear": (lambda m: L.AlgebraLinear(5, 3, alg, method=m), (x1,)),
        "Conv1d": (lambda m: L.AlgebraConv1d(4, 3, 3, alg, padding=1, method=m), (torch.randn(2, 4 * d, 7),)),
        "Conv2d": (lambda m: L.AlgebraConv2d(4, 3, 3, alg, stride=2, padding=1, method=m), (x2,)),
        "Conv2d-groups": (lambda m: L.AlgebraConv2d(4, 2, 1, alg, groups=2, method=m), (x2,)),
        "Conv3d": (lambda m: L.AlgebraConv3d(2, 2, 2, alg, method=m), (torch.randn(1, 2 * d, 3, 4, 3),)),
        "ConvTranspose1d": (lambda m: L.AlgebraConvTranspose1d(4, 3, 3, alg, stride=2, method=m),
                            (torch.randn(2, 4 * d, 5),)),
        "ConvTranspose2d": (lambda m: L.AlgebraConvTranspose2d(4, 3, 3, alg, stride=2, output_padding=1, method=m),
                            (x2,)),
        "ConvTranspose3d": (lambda m: L.AlgebraConvTranspose3d(2, 2, 2, alg, method=m), (torch.randn(1, 2 * d, 3, 2, 2),)),
        "RNN": (lambda m: L.AlgebraRNN(5, 3, alg, num_layers=2, method=m), (torch.randn(4, 2, 5 * d),)),
        "GRU": (lambda m: L.AlgebraGRU(5, 3, alg, bidirectional=True, batch_first=True, method=m),
                (torch.randn(2, 4, 5 * d),)),
        "LSTM": (lambda m: L.AlgebraLSTM(5, 3, alg, method=m), (torch.randn(4, 2, 5 * d),)),
        "RNNCell": (lambda m: L.AlgebraRNNCell(5, 3, alg, method=m), (x1,)),
        "GRUCell": (lambda m: L.AlgebraGRUCell(5, 3, alg, method=m), (x1,)),
        "LSTMCell": (lambda m: L.AlgebraLSTMCell(5, 3, alg, method=m), (x1,)),
    }
    return cases


PARAMETER_FREE_OR_NORM = {
    "BatchNorm1d-component": lambda a, d: (L.AlgebraBatchNorm1d(4, a, mode="component"), torch.randn(6, 4 * d)),
    "BatchNorm2d-whitening": lambda a, d: (L.AlgebraBatchNorm2d(4, a, mode="whitening"), torch.randn(3, 4 * d, 2, 2)),
    "BatchNorm3d-norm": lambda a, d: (L.AlgebraBatchNorm3d(2, a, mode="norm"), torch.randn(2, 2 * d, 2, 2, 2)),
    "LayerNorm-component": lambda a, d: (L.AlgebraLayerNorm(4, a, mode="component"), torch.randn(3, 4 * d)),
    "LayerNorm-norm": lambda a, d: (L.AlgebraLayerNorm(4, a, mode="norm"), torch.randn(3, 4 * d)),
    "GroupNorm-whitening": lambda a, d: (L.AlgebraGroupNorm(2, 4, a, mode="whitening"), torch.randn(2, 4 * d, 3)),
    "GroupNorm-component": lambda a, d: (L.AlgebraGroupNorm(2, 4, a), torch.randn(2, 4 * d, 3)),
    "InstanceNorm2d": lambda a, d: (L.AlgebraInstanceNorm2d(3, a, mode="norm", affine=True), torch.randn(2, 3 * d, 3, 3)),
    "SplitActivation": lambda a, d: (L.SplitActivation("gelu", a), torch.randn(3, 4 * d)),
    "ModReLU": lambda a, d: (L.ModReLU(4, a), torch.randn(3, 4 * d)),
    "NormGatedActivation": lambda a, d: (L.NormGatedActivation(4, a, gate="sigmoid"), torch.randn(3, 4 * d, 2)),
    "Dropout": lambda a, d: (L.AlgebraDropout(0.3, a), torch.randn(3, 4 * d)),
    "Lift": lambda a, d: (L.AlgebraLift(6, a, out_features=4, mode="linear"), torch.randn(3, 6)),
    "Lift-embed": lambda a, d: (L.AlgebraLift(6, a), torch.randn(3, 6, 5)),
    "Readout": lambda a, d: (L.AlgebraReadout(4, 5, a, mode="linear"), torch.randn(3, 4 * d)),
    "MaxPool2d": lambda a, d: (L.AlgebraMaxPool2d(2, algebra=a), torch.randn(2, 3 * d, 4, 4)),
    "AvgPool1d": lambda a, d: (L.AlgebraAvgPool1d(2, algebra=a), torch.randn(2, 3 * d, 4)),
    "AdaptiveMaxPool3d": lambda a, d: (L.AlgebraAdaptiveMaxPool3d(1, algebra=a), torch.randn(1, 2 * d, 2, 3, 2)),
    "AdaptiveAvgPool2d": lambda a, d: (L.AlgebraAdaptiveAvgPool2d((2, 1), algebra=a), torch.randn(2, 3 * d, 4, 4)),
}


@pytest.mark.parametrize("alg", ALGEBRAS)
@pytest.mark.parametrize("method", METHODS)
def test_weight_layers_on_meta(alg, method):
    """Every weight layer with every method, forward and backward, never leaves the input's device."""
    for name, (build, inputs) in layer_cases(alg).items():
        try:
            run_on_meta(build(method), *inputs)
        except AssertionError as e:
            raise AssertionError(f"{name} ({alg}, method={method}): {e}") from None


@pytest.mark.parametrize("alg", ["H", "Dual", "M2C"])
@pytest.mark.parametrize("name", sorted(PARAMETER_FREE_OR_NORM))
def test_norms_activations_pools_on_meta(alg, name):
    module, x = PARAMETER_FREE_OR_NORM[name](alg, load_algebra(alg).dim)
    module.train()
    run_on_meta(module, x)
    module.eval()
    run_on_meta(module, x, backward=False)


@pytest.mark.parametrize("method", METHODS)
def test_functional_api_on_meta(method):
    A = load_algebra("M2R")
    d = A.dim
    w, b = torch.randn(3, 5, d), torch.randn(3, d)

    def f(x, w, b):
        return (AF.algebra_linear(x, w, b, algebra=A, method=method),
                AF.algebra_conv1d(x.reshape(2, 5 * d, 1), w[..., None, :], b, algebra=A, method=method),
                AF.algebra_conv_transpose1d(x.reshape(2, 5 * d, 1), w.transpose(0, 1)[..., None, :].contiguous(), b,
                                            algebra=A, method=method))
    run_on_meta(nn.Identity(), torch.randn(2, 5 * d), w, b, forward=f)


# ---------------------------------------------------------------------------------- toolkit and models
def test_initialisers_on_meta():
    for fn in (ainit.kaiming_normal_, ainit.kaiming_uniform_, ainit.xavier_normal_, ainit.xavier_uniform_):
        w = torch.empty(4, 3, 2, 4, device=META)
        guard = DeviceGuard()
        with guard:
            fn(w, "H")
        assert w.device == META and not guard.violations, guard.violations
    model = nn.Sequential(L.AlgebraLinear(3, 4, "Dual"), L.AlgebraConv2d(4, 2, 3, "Dual")).to(META)
    guard = DeviceGuard()
    with guard:
        ainit.init_model_(model, scheme="he")
    assert not guard.violations, guard.violations


def test_sparsity_toolkit_on_meta():
    model = nn.Sequential(L.AlgebraLinear(6, 5, "H"), nn.ReLU(), L.AlgebraConv1d(5, 4, 3, "H"))
    sparsity.prune_elements_(model, 0.5)                      # masks chosen on the CPU (data-dependent)
    run_on_meta(model[0], torch.randn(2, 6 * 4))
    run_on_meta(model[2], torch.randn(2, 5 * 4, 5))
    sparse = sparsity.to_block_sparse(L.AlgebraLinear(6, 5, "H"))
    run_on_meta(sparse, torch.randn(3, 6 * 4))


@pytest.mark.parametrize("alg", ["H", "M2R"])
def test_model_builders_on_meta(alg):
    d = load_algebra(alg).dim
    run_on_meta(resnet(alg, widths=(2, 3), layers=(1, 1)), torch.randn(2, 3, 8, 8))
    run_on_meta(resnet(alg, block="bottleneck", widths=(2, 2), layers=(1, 1), stem="imagenet",
                       norm="whitening"), torch.randn(1, 3, 16, 16))
    lm = TransformerLM(11, d_model=4, n_layers=1, n_heads=2, max_len=8, algebra=alg)
    run_on_meta(lm, torch.randint(0, 11, (2, 5)))
    base = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    run_on_meta(convert(base, alg, example_input=torch.randn(1, 3, 6, 6)), torch.randn(2, 3, 6, 6))
    width, m = match_model(lambda w: nn.Sequential(L.AlgebraLinear(4, w, alg), L.AlgebraLinear(w, 2, alg)),
                           nn.Sequential(nn.Linear(4 * d, 16), nn.Linear(16, 2 * d)), candidates=range(1, 20))
    run_on_meta(m, torch.randn(3, 4 * d))


def test_guard_catches_a_constant_on_the_wrong_device():
    """The check can fail: a CPU tensor meeting a meta input is reported (the runtime's bug class)."""
    guard = DeviceGuard()
    x = torch.randn(3, 4, device=META)
    with pytest.raises(Exception):
        with guard:
            x * torch.arange(4.0)
    assert guard.violations and "cpu" in guard.violations[0]


def test_guard_catches_a_constant_copied_on_every_call():
    """A constant rebuilt on the host and copied to the device on each call fails the second-run check."""
    class PerCallConstant(nn.Module):
        def forward(self, x):
            return x * torch.tensor([1.0, 2.0, 3.0, 4.0]).to(x.device)

    with pytest.raises(AssertionError, match="host-to-device copies on every call"):
        run_on_meta(PerCallConstant(), torch.randn(2, 4))
