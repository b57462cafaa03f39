"""ONNX export (torch.onnx.export, dynamo exporter) of algebra layers and models, run with onnxruntime and
compared with torch.  Skipped without onnx / onnxruntime / onnxscript (the `export` extra), except the
torch.export check, which needs torch only."""
from __future__ import annotations

import warnings

import pytest
import torch

from runtime import load_algebra
from runtime.layers import AlgebraConv2d, AlgebraLinear
from runtime.models import TransformerLM, resnet, vit

pytestmark = pytest.mark.usefixtures("one_thread")


def run_onnx(model, *inputs):
    """Export `model` on `inputs`, run the ONNX graph with onnxruntime; returns (onnx outputs, torch outputs)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    model.eval()
    with torch.no_grad():
        ref = model(*inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, inputs, dynamo=True, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    out = torch.from_numpy(session.run(None, feeds)[0])
    return out, ref


@pytest.mark.parametrize("method", ["block", "fold", "bilinear", "kernel"])
def test_linear_and_conv_export(method):
    torch.manual_seed(0)
    lin = AlgebraLinear(8, 6, "M2R", method=method)
    out, ref = run_onnx(lin, torch.randn(3, 32))
    assert torch.allclose(out, ref, atol=1e-5)
    conv = AlgebraConv2d(4, 3, 3, algebra="H", padding=1, stride=2, method=method)
    out, ref = run_onnx(conv, torch.randn(2, 16, 7, 7))
    assert torch.allclose(out, ref, atol=1e-5)


def test_kernel_layers_take_the_torch_path_while_exporting():
    """method='kernel' layers export (their custom ops have no ONNX lowering) and keep using the kernel after."""
    from runtime.kernels import choice as kernel_choice

    assert not kernel_choice.exporting()
    lin = AlgebraLinear(8, 6, "C", method="kernel")
    x = torch.randn(1, 16)
    out, ref = run_onnx(lin, x)
    assert torch.allclose(out, ref, atol=1e-5)
    assert not kernel_choice.exporting()


@pytest.mark.parametrize("method", ["fold", "bilinear"])
def test_resnet_export(method):
    torch.manual_seed(1)
    net = resnet("H", "basic", layers=(1, 1), widths=(2, 3), num_classes=5, method=method)
    out, ref = run_onnx(net, torch.randn(2, 3, 8, 8))
    assert torch.allclose(out, ref, atol=1e-4)


def test_vit_and_transformer_lm_export():
    torch.manual_seed(2)
    model = vit("C", image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=4, mlp_dim=8, num_classes=3,
                method="block")
    out, ref = run_onnx(model, torch.randn(2, 3, 8, 8))
    assert torch.allclose(out, ref, atol=1e-5)
    lm = TransformerLM(17, d_model=4, n_layers=1, n_heads=2, max_len=8, algebra="M2R", method="fold")
    out, ref = run_onnx(lm, torch.randint(0, 17, (2, 6)))
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("method", ["block", "fold", "bilinear"])
def test_export_leaves_no_fake_constants_behind(method):
    """torch.export traces with fake tensors: the algebra's cached constants must stay real, so eager calls
    after an export give the right numbers and a second export works.  float64 constants are made first
    while exporting here (no eager float64 call of these algebras comes before)."""
    torch.manual_seed(3)
    name = {"block": "Cross3", "fold": "M3R", "bilinear": "M2C"}[method]
    A = load_algebra(name)
    lin = AlgebraLinear(3, 2, name, method=method).double().eval()
    x = torch.randn(2, 3 * A.dim, dtype=torch.float64)
    torch.export.export(lin, (x,))
    assert all(type(t) is torch.Tensor for t in A.cache.tensors.values())
    assert all(type(t) is torch.Tensor for t in A.fold.matrices.values() if isinstance(t, torch.Tensor))
    expect = torch.einsum("oikj,nij->nok", A.left_matrix(lin.weight.detach()), x.view(2, 3, A.dim)).flatten(1)
    with torch.no_grad():
        assert torch.allclose(lin(x), expect + lin.bias.detach().flatten(), atol=1e-12)
    torch.export.export(lin, (x,))
