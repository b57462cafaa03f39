"""Learned (PHM) algebras: every product layer over a trainable structure tensor, against explicit float64
products with that tensor; autograd through weight and structure; counting; state_dict; freezing into a fixed
algebra through the normal build."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import runtime
from runtime import counting
from runtime.layers import (AlgebraConv1d, AlgebraConv2d, AlgebraConvTranspose1d, AlgebraGRU, AlgebraLinear,
                            AlgebraRotationLinear)
from runtime.learned_algebra import LearnedAlgebra
from runtime.models import TransformerLM, matched_width

METHODS = ("block", "kernel", "auto", None)


def _linear_oracle(layer, x):
    """y[n, o, k] = sum_{i a j} W[o, i, a] T[a, j, k] x[n, i, j] + b[o, k], in float64."""
    W, T = layer.weight.double(), layer.algebra.T.double()
    d = T.shape[0]
    y = torch.einsum("oia,ajk,nij->nok", W, T, x.double().view(x.shape[0], -1, d))
    return y.reshape(x.shape[0], -1) + layer.bias.double().reshape(-1)


def _block_weight(W, T, transposed=False):
    """The real weight of a conv layer with structure T: (O*d, I*d, *k), or torch's transposed (I*d, O*d, *k)."""
    taps = W.shape[2:-1]
    if transposed:                     # W (I, O, *k, d): rows (i, j) of the input, columns (o, k) of the output
        B = torch.einsum("io...a,ajk->ijok...", W, T)
        return B.reshape(W.shape[0] * T.shape[0], W.shape[1] * T.shape[0], *taps)
    B = torch.einsum("oi...a,ajk->okij...", W, T)
    return B.reshape(W.shape[0] * T.shape[0], W.shape[1] * T.shape[0], *taps)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("d", [2, 4])
@pytest.mark.parametrize("rows", [1, 7])
def test_linear_matches_explicit_product(method, d, rows):
    torch.manual_seed(d * 10 + rows)
    layer = AlgebraLinear(5, 3, algebra=runtime.learned(d), method=method)
    x = torch.randn(rows, 5 * d)
    ref = _linear_oracle(layer, x)
    assert torch.allclose(layer(x).double(), ref, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(layer(x).double(), ref, atol=1e-5)
    with torch.inference_mode():
        assert torch.allclose(layer(x).double(), ref, atol=1e-5)


@pytest.mark.parametrize("method", ["block", "kernel"])
def test_gradcheck_weight_structure_and_input(method):
    torch.manual_seed(1)
    layer = AlgebraLinear(3, 2, algebra="PHM3", method=method).double()
    x = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)

    def f(w, T, b, x):
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.algebra.T.copy_(T)
        return torch.func.functional_call(layer, {"weight": w, "algebra.T": T, "bias": b}, (x,))

    args = (layer.weight.detach().clone().requires_grad_(), layer.algebra.T.detach().clone().requires_grad_(),
            layer.bias.detach().clone().requires_grad_(), x)
    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize("method", ["block", "kernel"])
def test_conv_and_transposed_conv_match_block_weight(method):
    torch.manual_seed(2)
    conv = AlgebraConv2d(2, 3, 3, algebra="PHM4", padding=1, stride=2, method=method).double()
    x = torch.randn(2, 8, 7, 6, dtype=torch.float64)
    ref = F.conv2d(x, _block_weight(conv.weight, conv.algebra.T), conv.bias.reshape(-1), stride=2, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-10)
    grouped = AlgebraConv1d(4, 2, 3, algebra="PHM2", groups=2, method=method).double()
    x1 = torch.randn(3, 8, 9, dtype=torch.float64)
    ref1 = F.conv1d(x1, _block_weight(grouped.weight, grouped.algebra.T), grouped.bias.reshape(-1), groups=2)
    assert torch.allclose(grouped(x1), ref1, atol=1e-10)
    ct = AlgebraConvTranspose1d(3, 2, 3, algebra="PHM2", stride=2, method=method).double()
    xt = torch.randn(2, 6, 5, dtype=torch.float64)
    reft = F.conv_transpose1d(xt, _block_weight(ct.weight, ct.algebra.T, transposed=True), ct.bias.reshape(-1),
                              stride=2)
    assert torch.allclose(ct(xt), reft, atol=1e-10)


def test_block_and_transform_paths_agree_in_gradients():
    torch.manual_seed(3)
    a = AlgebraLinear(6, 4, algebra="PHM4", method="block").double()
    b = AlgebraLinear(6, 4, algebra="PHM4", method="kernel").double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 24, dtype=torch.float64)
    for layer in (a, b):
        (layer(x) ** 2).sum().backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-10), name


def test_each_layer_owns_its_structure_and_training_moves_it():
    torch.manual_seed(4)
    model = TransformerLM(40, d_model=8, n_layers=2, n_heads=2, algebra="PHM4", max_len=32)
    structures = [n for n, _ in model.named_parameters() if n.endswith("algebra.T")]
    assert len(structures) >= 8                      # q, k, v, out projections and the MLP of two blocks
    Ts = [p for n, p in model.named_parameters() if n.endswith("algebra.T")]
    assert not torch.equal(Ts[0], Ts[1])
    before = Ts[0].detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    toks = torch.randint(0, 40, (4, 17))
    first = model.loss(toks).item()
    for _ in range(20):
        loss = model.loss(toks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    assert not torch.equal(before, Ts[0])
    model.eval()
    out = model.generate(toks[:1, :4], 6)
    assert out.shape == (1, 10)


def test_shared_module_is_one_parameter():
    shared = LearnedAlgebra(runtime.learned(4))
    a = AlgebraLinear(3, 3, algebra=shared)
    b = AlgebraLinear(3, 3, algebra=shared)
    model = torch.nn.Sequential(a, b)
    assert a.algebra is b.algebra is shared
    assert sum(p.numel() for p in model.parameters()) == 2 * (9 * 4 + 12) + 64


def test_counting_params_and_macs():
    layer = AlgebraLinear(6, 5, algebra="PHM4")
    rep = counting.count(layer, torch.randn(3, 24))
    assert rep.params == 6 * 5 * 4 + 5 * 4 + 4 ** 3
    pairs = 3 * 6 * 5
    assert rep.total_macs("naive") == pairs * 64
    assert rep.total_macs("block") == pairs * 16
    assert not rep["AlgebraLinear"].has("bilinear")
    assert matched_width(64, "PHM4") == matched_width(64, "H") == 32


def test_state_dict_round_trip_and_inference_copy():
    torch.manual_seed(5)
    model = TransformerLM(30, d_model=8, n_layers=1, n_heads=2, algebra="PHM2", max_len=16)
    sd = model.state_dict()
    assert any(k.endswith("algebra.T") for k in sd)
    other = TransformerLM(30, d_model=8, n_layers=1, n_heads=2, algebra="PHM2", max_len=16)
    other.load_state_dict(sd)
    toks = torch.randint(0, 30, (2, 9))
    model.eval(), other.eval()
    with torch.inference_mode():
        assert torch.equal(model(toks), other(toks))
    # an edit of the structure alone (weights unchanged) is seen at once: nothing derived from T is cached
    layer = AlgebraLinear(4, 4, algebra="PHM4").eval()
    x = torch.randn(1, 16)
    with torch.no_grad():
        y0 = layer(x)
        layer.algebra.T.data.mul_(2)
        assert torch.allclose(layer(x), 2 * y0, atol=1e-5)


def test_clear_errors():
    with pytest.raises(ValueError, match="needs a fixed algebra.*PHM4"):
        AlgebraLinear(2, 2, algebra="PHM4", method="bilinear")(torch.randn(1, 8))
    with pytest.raises(TypeError, match="no structure tensor yet"):
        runtime.functional.algebra_linear(torch.randn(1, 8), torch.randn(2, 2, 4), algebra="PHM4")
    with pytest.raises(ValueError, match="from 2 to 16"):
        runtime.learned(1)
    with pytest.raises(ValueError, match="learned"):
        AlgebraRotationLinear(2, 2, algebra="PHM4")
    with pytest.raises(ValueError, match="learned"):
        runtime.sparsity.to_block_sparse(AlgebraLinear(4, 4, algebra="PHM2"))


def test_freeze_builds_a_fixed_algebra(tmp_path):
    torch.manual_seed(6)
    layer = AlgebraLinear(3, 2, algebra="PHM2").double()
    layer.algebra.freeze()
    assert not layer.algebra.T.requires_grad
    spec_dir, out = tmp_path / "specs", tmp_path / "generated"
    spec_dir.mkdir()
    (spec_dir / "frozen.py").write_text(layer.algebra.spec_source("Frozen2", max_denominator=1 << 20))
    res = subprocess.run([sys.executable, "-m", "codegen", "build", "--spec-dir", str(spec_dir), "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    A = runtime.load_algebra("Frozen2", out)
    assert math.isclose(float(abs(A.structure - layer.algebra.structure).max()), 0.0, abs_tol=1e-5)
    fixed = AlgebraLinear(3, 2, algebra=A).double()
    fixed.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("algebra.")})
    x = torch.randn(4, 6, dtype=torch.float64)
    assert torch.allclose(fixed(x), layer(x), atol=1e-4)


def test_gru_over_a_learned_algebra_matches_its_block_path():
    torch.manual_seed(7)
    a = AlgebraGRU(3, 2, algebra="PHM2", batch_first=True, method="block").double()
    b = AlgebraGRU(3, 2, algebra="PHM2", batch_first=True, method="kernel").double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    assert torch.allclose(a(x)[0], b(x)[0], atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_learned_kernel_matches_the_explicit_product(dtype):
    from runtime.kernels import choice, cpu

    if not cpu.kernels_available():
        pytest.skip("no C++ compiler")
    g = torch.Generator().manual_seed(8)
    # output rows not a multiple of the row blocking, K = I*d not a multiple of the vector width, 1..16 columns
    for O, I, d, N, bias in ((1, 1, 2, 1, False), (5, 19, 2, 3, True), (13, 16, 4, 4, True), (7, 37, 3, 5, False),
                             (33, 9, 8, 2, True), (6, 5, 5, 3, True), (3, 4, 16, 1, False)):
        w = torch.randn(O, I, d, generator=g, dtype=dtype)
        T = torch.randn(d, d, d, generator=g, dtype=dtype)
        x = torch.randn(N, I * d, generator=g, dtype=dtype)
        b = torch.randn(O, d, generator=g, dtype=dtype) if bias else None
        ref = torch.einsum("oia,ajk,nij->nok", w.double(), T.double(), x.double().view(N, I, d))
        ref = (ref + (0 if b is None else b.double())).reshape(N, O * d)
        tol = 1e-4 if dtype == torch.float32 else 1e-12
        assert torch.allclose(cpu.learned(w, T, x, b).double(), ref, atol=tol * I * d * d), (O, I, d, N)
    # a learned layer at inference takes the kernel; with a gradient it does not (the op has no autograd)
    w, T, x = torch.randn(8, 8, 4, dtype=dtype), torch.randn(4, 4, 4, dtype=dtype), torch.randn(4, 32, dtype=dtype)
    assert choice.learned_kernel(w, T, x, None) is not None
    assert choice.learned_kernel(w, T, torch.randn(5, 32, dtype=dtype), None) is None      # 20 columns: torch
    assert choice.learned_kernel(w, T, torch.randn(2, 32, dtype=dtype), None) is not None   # 8: the kernel
    assert choice.learned_kernel(w, T.requires_grad_(), x, None) is None
    with pytest.raises(ValueError, match="inference only"):
        cpu.learned(w, T, x)


def test_second_derivatives_through_both_paths():
    torch.manual_seed(9)
    for method in ("block", "kernel"):
        layer = AlgebraLinear(2, 2, algebra="PHM2", method=method).double()
        x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
        T = layer.algebra.T.detach().clone().requires_grad_()
        w = layer.weight.detach().clone().requires_grad_()
        f = lambda w, T, x: torch.func.functional_call(layer, {"weight": w, "algebra.T": T}, (x,))  # noqa: E731
        assert torch.autograd.gradgradcheck(f, (w, T, x))


def test_model_builders_and_recurrent_layers_take_learned_algebras():
    from runtime.layers import AlgebraGRUCell, AlgebraLSTM
    from runtime.models import resnet, vit

    torch.manual_seed(10)
    models = [(resnet("PHM4", "basic", layers=(1, 1), widths=(4, 8), stem="cifar", in_channels=1, num_classes=10),
               torch.randn(2, 1, 8, 8)),
              (vit("PHM4", image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
                   num_classes=10), torch.randn(2, 3, 8, 8)),
              (AlgebraLSTM(3, 2, algebra="PHM2", num_layers=2), torch.randn(5, 2, 6)),
              (AlgebraGRUCell(3, 2, algebra="PHM2"), torch.randn(2, 6))]
    for model, x in models:
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        assert torch.isfinite(out).all()
        out.square().sum().backward()
        Ts = [p for n, p in model.named_parameters() if n.endswith("algebra.T")]
        assert Ts and all(p.grad is not None and p.grad.abs().sum() > 0 for p in Ts), type(model).__name__


def test_nearest_known_finds_an_algebra_written_in_another_basis():
    from runtime.learned_algebra import change_basis, nearest_known

    g = torch.Generator().manual_seed(11)
    H = torch.as_tensor(runtime.load_algebra("H").structure)
    P = torch.eye(4, dtype=torch.float64) + 0.2 * torch.randn(4, 4, generator=g, dtype=torch.float64)
    T = change_basis(H, P)
    found = nearest_known(T, names=["H", "RandH"], restarts=2, steps=300)
    assert found[0].name == "H" and found[0].distance < 0.02
    assert found[1].name == "RandH" and found[1].distance > 0.2
    # the copy reported is H in the basis the search found: close to T entry by entry
    assert torch.allclose(found[0].structure, T, atol=0.05)
