"""Runtime inputs that cannot be right are refused, and float64 layers carry exact float64 constants.

- Integer, bool and complex tensors where real floating point is needed: `A.mul` / `mul_scheme` on int64
  truncated the scheme's fractional coefficients (R[Z3]: 19 where 20 is right); every layer refuses them too.
- `.double()` / `.to(float64)` after float32 use: the bilinear path must use the float64 scheme constants (a
  scheme with the coefficient 1/3 was 6e-8 off when its constants stayed float32-rounded).
"""
from __future__ import annotations

import pytest
import torch

import runtime
from codegen.build import build
from runtime import load_algebra
from runtime.functional import algebra_conv2d, algebra_linear
from runtime.layers import (AlgebraAvgPool2d, AlgebraBatchNorm2d, AlgebraConv2d, AlgebraDropout, AlgebraLayerNorm,
                            AlgebraLift, AlgebraLinear, AlgebraMaxPool2d, AlgebraReadout, ModReLU, SplitActivation)
from runtime.sparsity import to_block_sparse

# The group algebra R[Z3] = R x C with a rank-4 scheme (Fourier transform, Karatsuba on the C part): its
# inverse transform brings the coefficients 1/3 and 1/6, which float32 cannot hold.
Z3_SPEC = '''
from codegen.spec import algebra

Z3 = algebra("Z3", basis=["e0", "e1", "e2"],
             products={f"e{a}*e{b}": f"e{(a + b) % 3}" for a in range(3) for b in range(3)},
             unit="e0", title="group algebra of Z/3",
             scheme=dict(U=[[1, 1, 1], [2, -1, -1], [0, 1, -1], [2, 0, -2]],
                         V=[[1, 1, 1], [2, -1, -1], [0, 1, -1], [2, 0, -2]],
                         W=[["1/3", "1/3", "1/3"], ["1/6", "-1/3", "1/6"], ["-1/2", 0, "1/2"], [0, "1/4", "-1/4"]]))
'''


@pytest.fixture(scope="module")
def Z3(tmp_path_factory):
    root = tmp_path_factory.mktemp("z3")
    (root / "specs").mkdir()
    (root / "specs" / "z3.py").write_text(Z3_SPEC)
    build(root / "specs", root / "out")
    runtime.clear_cache()
    A = load_algebra("Z3", root / "out")
    assert A.rank == 4 and "1/3" in A.scheme.unusual_coefficients
    return A


def cyclic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The product of R[Z3] by its definition: a cyclic convolution of the coordinates."""
    return torch.stack([sum(x[..., a] * y[..., (k - a) % 3] for a in range(3)) for k in range(3)], dim=-1)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_products_refuse_non_real_floating_tensors(Z3, dtype):
    x = torch.tensor([1, 2, 3]).to(dtype)
    for f in (Z3.mul, Z3.mul_scheme):
        with pytest.raises(TypeError, match=rf"Z3\.mul(_scheme)?: x must be a real floating-point tensor, got {dtype}"):
            f(x, x)
    with pytest.raises(TypeError, match="real floating-point"):
        Z3.left_matrix(x)


def test_mul_scheme_on_integers_cast_to_float_is_exact(Z3):
    """The reproduction's numbers: with integer-valued float tensors the result is the exact integer (20, not 19)."""
    x, y = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)
    want = cyclic(x, y)
    torch.testing.assert_close(Z3.mul_scheme(x, y), want, rtol=0, atol=1e-14)
    torch.testing.assert_close(Z3.mul(x, y), want, rtol=0, atol=0)


LAYERS = {
    "linear": (lambda: AlgebraLinear(2, 2, algebra="H"), (3, 8)),
    "conv2d": (lambda: AlgebraConv2d(2, 2, 3, algebra="H"), (1, 8, 4, 4)),
    "batchnorm": (lambda: AlgebraBatchNorm2d(2, algebra="H"), (2, 8, 3, 3)),
    "whitening": (lambda: AlgebraBatchNorm2d(2, algebra="H", mode="whitening"), (2, 8, 3, 3)),
    "layernorm": (lambda: AlgebraLayerNorm(2, algebra="H"), (3, 8)),
    "split": (lambda: SplitActivation("relu"), (3, 8)),
    "modrelu": (lambda: ModReLU(2, algebra="H"), (3, 8)),
    "dropout": (lambda: AlgebraDropout(0.5, algebra="H"), (3, 8)),
    "lift": (lambda: AlgebraLift(8, algebra="H"), (3, 8)),
    "readout": (lambda: AlgebraReadout(2, 3, algebra="H"), (3, 8)),
    "maxpool": (lambda: AlgebraMaxPool2d(2, algebra="H"), (1, 8, 4, 4)),
    "avgpool": (lambda: AlgebraAvgPool2d(2, algebra="H"), (1, 8, 4, 4)),
    "block_sparse": (lambda: to_block_sparse(AlgebraLinear(2, 2, algebra="H"), 0.0), (3, 8)),
}


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layers_refuse_non_real_floating_inputs(layer, dtype):
    make, shape = LAYERS[layer]
    x = torch.randint(0, 3, shape).to(dtype)
    with pytest.raises(TypeError, match=f"must be a real floating-point tensor, got {dtype}"):
        make()(x)


def _exact_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """y_o = sum_i w_oi * x_i by the cyclic-convolution definition (exact for integer-valued float64)."""
    N, O, I = x.shape[0], w.shape[0], w.shape[1]
    prods = cyclic(w[None, :, :, :], x.view(N, 1, I, 3))                   # (N, O, I, 3)
    return prods.sum(2).reshape(N, O * 3)


def test_float64_bilinear_path_is_exact_for_a_scheme_with_one_third(Z3):
    g = torch.Generator().manual_seed(1)
    w = torch.randint(-8, 9, (6, 5, 3), generator=g).double()
    x = torch.randint(-8, 9, (7, 15), generator=g).double()
    exact = _exact_linear(x, w)
    y = algebra_linear(x, w, None, Z3, "bilinear")
    assert (y - exact).abs().max() <= 1e-15 * exact.abs().max()


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_double_after_float32_use_carries_float64_constants(Z3, kind):
    g = torch.Generator().manual_seed(2)
    if kind == "linear":
        layer = AlgebraLinear(5, 6, algebra=Z3, method="bilinear", bias=False)
        x = torch.randint(-8, 9, (7, 15), generator=g).double()
    else:
        layer = AlgebraConv2d(5, 6, 1, algebra=Z3, method="bilinear", bias=False)
        x = torch.randint(-8, 9, (2, 15, 3, 3), generator=g).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-8, 9, layer.weight.shape, generator=g).float())
        layer(x.float())                                   # float32 constants and caches exist now
        layer.double()
        y = layer(x)
    w = layer.weight.detach()
    if kind == "linear":
        exact = _exact_linear(x, w)
    else:
        exact = _exact_linear(x.permute(0, 2, 3, 1).reshape(-1, 15), w[:, :, 0, 0])
        exact = exact.view(2, 3, 3, 18).permute(0, 3, 1, 2)
    assert y.dtype == torch.float64
    assert (y - exact).abs().max() <= 1e-15 * exact.abs().max()
    # and the float32 path really differs by the rounding of 1/3 (so the check above can fail)
    with torch.no_grad():
        y32 = layer.float()(x.float()).double()
    assert (y32 - exact).abs().max() > 1e-9 * exact.abs().max()
