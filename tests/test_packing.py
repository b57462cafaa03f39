"""Packed inference layers (runtime.packing) and the planar CPU kernel they run: the kernel against the block
path in float64 for every built-in algebra and a user algebra, the packed layout's inverse and its refusals, and
the packed layer as a user relies on it (same outputs as the AlgebraLinear, state dicts both ways, .to(),
pickling, gradients to the input, inference_mode, whole models, no second weight copy to go stale)."""
from __future__ import annotations

import copy
import io

import pytest
import torch

from runtime import load_algebra, learned, packing
from runtime import sparsity as sp
from runtime.kernels import cpu
from runtime.kernels.opkey import key_of
from runtime.layers import AlgebraLinear
from runtime.models import TransformerLM

from test_cpu_kernels import ALGEBRAS, assert_matches, block_reference, octonions  # noqa: F401 (fixture)

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(cpu.find_compiler() is None, reason="needs a C++ compiler")]


@pytest.fixture(params=ALGEBRAS + ["Fano"])
def alg(request, octonions):  # noqa: F811
    return octonions if request.param == "Fano" else load_algebra(request.param)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_planar_kernel_matches_the_block_path(alg, dtype):
    d = alg.dim
    # batch 1-4: elements in the vector lanes; above: batch rows in the lanes (paired rows up to half the lanes)
    for out, inn, batch in ((1, 1, 1), (5, 7, 1), (13, 37, 2), (9, 70, 3), (17, 19, 5), (30, 20, 8), (6, 33, 20)):
        w = torch.randn(out, inn, d, dtype=dtype)
        x = torch.randn(batch, inn * d, dtype=dtype)
        b = torch.randn(out, d, dtype=dtype)
        packed = cpu.pack(alg, w)
        assert torch.equal(cpu.unpack(alg, packed, out, inn), w)            # the layout is a permutation
        y = cpu.planar_checked(alg, packed, x, b, out, inn)
        assert_matches(y, block_reference(x, w, b, alg), inn * d, dtype)
        assert_matches(cpu.planar_checked(alg, packed, x, None, out, inn), block_reference(x, w, None, alg), inn * d,
                       dtype)


def test_planar_kernel_splits_rows_between_threads(alg):
    """Rows are split between torch's threads at any row, a packed group of rows included."""
    torch.set_num_threads(2)
    d = alg.dim
    w, b = torch.randn(1001, 90, d), torch.randn(1001, d)
    packed = cpu.pack(alg, w)
    for batch in (1, 3, 12):
        x = torch.randn(batch, 90 * d)
        assert_matches(cpu.planar_checked(alg, packed, x, b, 1001, 90), block_reference(x, w, b, alg), 90 * d,
                       torch.float32)


def test_packed_weights_of_another_shape_or_dtype_are_refused():
    H = load_algebra("H")
    w = torch.randn(6, 40, 4)
    packed = cpu.pack(H, w)
    with pytest.raises(RuntimeError, match=r"x must be \(B, 160\)"):
        cpu.planar_checked(H, packed, torch.randn(1, 41 * 4), None, 6, 40)      # another input width
    with pytest.raises(RuntimeError, match="packed weight is .* pack it again"):
        cpu.planar_checked(H, packed, torch.randn(1, 70 * 4), None, 6, 70)      # packed for 40 elements
    with pytest.raises(RuntimeError, match="pack it again"):
        cpu.planar_checked(H, packed.double(), torch.randn(1, 40 * 4, dtype=torch.float64), None, 6, 40)
    with pytest.raises(RuntimeError, match="planar variant runs on a packed weight"):
        torch.ops.algebranets_cpu.dense("H", w, torch.randn(1, 40, 4), None, 3)


@pytest.mark.parametrize("name", ALGEBRAS)
def test_packed_layer_gives_the_layers_outputs(name):
    layer = AlgebraLinear(37, 21, algebra=name).eval()
    packed = packing.to_packed(layer)
    assert isinstance(packed, packing.PackedAlgebraLinear) and packed.is_packed
    assert list(packed.parameters()) == [] and not hasattr(packed, "weight")     # nothing to edit behind its back
    d = layer.algebra.dim
    for batch in (1, 3, packing.PLANAR_MAX_ROWS + 1):                 # planar kernel, and the torch path above
        x = torch.randn(2, batch, 37 * d)
        with torch.no_grad():
            ref = block_reference(x, layer.weight, layer.bias, layer.algebra)
            assert_matches(packed(x), ref, 37 * d, torch.float32)
        with torch.inference_mode():
            assert_matches(packed(x), ref, 37 * d, torch.float32)


def test_packed_layer_state_moves_between_forms_and_dtypes():
    layer = AlgebraLinear(30, 11, algebra="M3R")
    packed = packing.to_packed(layer)
    state = packed.state_dict()
    assert sorted(state) == ["bias", "weight"] and torch.equal(state["weight"], layer.weight.detach())
    plain = AlgebraLinear(30, 11, algebra="M3R")
    plain.load_state_dict(state)                                   # packed -> plain
    other = packing.to_packed(AlgebraLinear(30, 11, algebra="M3R"))
    fresh = AlgebraLinear(30, 11, algebra="M3R")
    other.load_state_dict(fresh.state_dict())                      # plain -> packed: repacked, used at once
    x = torch.randn(1, 30 * 9)
    with torch.no_grad():
        assert torch.allclose(other(x), fresh(x), atol=1e-5)
        assert torch.allclose(plain(x), layer(x), atol=1e-5)
    with pytest.raises(RuntimeError, match="size mismatch"):
        other.load_state_dict(AlgebraLinear(31, 11, algebra="M3R").state_dict())
    double = copy.deepcopy(packed).double()                        # repacked for float64's lanes
    assert double.is_packed and double.packed.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(double(x.double()), layer.double()(x.double()))
    buffer = io.BytesIO()
    torch.save(packed, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        assert torch.equal(loaded(x.double().float()), packed(x))


def test_packed_layer_passes_gradients_to_its_input():
    layer = AlgebraLinear(12, 7, algebra="H")
    packed = packing.to_packed(layer)
    x = torch.randn(1, 48, requires_grad=True)
    packed(x).pow(2).sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    layer(x_ref).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_layers_built_and_packed_under_inference_mode():
    with torch.inference_mode():
        layer = AlgebraLinear(25, 9, algebra="M4R")
        packed = packing.to_packed(layer)
        x = torch.randn(1, 25 * 16)
        torch.testing.assert_close(packed(x), layer(x), rtol=1e-5, atol=1e-5)


def test_a_pruned_layer_packs_with_its_mask_and_learned_ones_are_refused():
    layer = AlgebraLinear(20, 8, algebra="C")
    sp.prune_elements_(layer, 0.5)
    packed = packing.to_packed(layer)
    x = torch.randn(1, 40)
    with torch.no_grad():
        torch.testing.assert_close(packed(x), layer(x), rtol=1e-5, atol=1e-5)
    phm = AlgebraLinear(4, 4, algebra=learned(4))
    assert packing.to_packed(phm) is phm
    with pytest.raises(ValueError, match="algebra PHM4 is learned"):
        packing.PackedAlgebraLinear(phm)


def test_a_packed_model_generates_the_same_tokens():
    torch.manual_seed(0)
    model = TransformerLM(vocab_size=50, d_model=8, n_heads=2, n_layers=2, algebra="M3R", max_len=64).eval()
    fast = packing.convert_to_packed(copy.deepcopy(model))
    names = [type(m).__name__ for m in fast.modules()]
    assert "AlgebraLinear" not in names and names.count("PackedAlgebraLinear") == 12
    prompt = torch.randint(0, 50, (1, 5))
    with torch.inference_mode():
        assert torch.equal(fast.generate(prompt, 12), model.generate(prompt, 12))


def test_packed_layer_compiles_and_exports_with_the_planar_op():
    torch._dynamo.reset()
    layer = AlgebraLinear(20, 12, algebra="M3R").eval()
    packed = packing.to_packed(layer)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm.code)
        return gm.forward

    x = torch.randn(1, 180)
    with torch.no_grad():
        ref = layer(x)
        torch.testing.assert_close(torch.compile(packed, fullgraph=True, backend=backend)(x), ref)
        assert any("algebranets_cpu.planar" in g for g in graphs)
        exported = torch.export.export(packed, (x,))
        assert "algebranets_cpu.planar" in exported.graph_module.code
        torch.testing.assert_close(exported.module()(x), ref)


def test_planar_op_passes_torch_library_checks():
    H = load_algebra("H")
    packed = cpu.pack(H, torch.randn(5, 9, 4))
    x, b = torch.randn(2, 36), torch.randn(5, 4)
    torch.library.opcheck(torch.ops.algebranets_cpu.planar.default, (key_of(H), packed, x, b, 5, 9),
                          test_utils=("test_schema", "test_faketensor"))
