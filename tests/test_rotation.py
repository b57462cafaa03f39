"""Rotation (sandwich) layers and anti-involutions, against explicit rotation matrices of unit quaternions and
explicit products w x w̄ through Algebra.mul in float64."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codegen.build import build
from runtime import counting, load_algebra
from runtime.involution import involution_matrix
from runtime.layers import AlgebraRotationConv2d, AlgebraRotationLinear
from runtime.layers.rotation import rotation_weight

pytestmark = pytest.mark.usefixtures("one_thread")
D64 = torch.float64


def rotation_matrix(q: torch.Tensor) -> torch.Tensor:
    """The 3 x 3 rotation of a unit quaternion (w, x, y, z): the textbook formula."""
    w, x, y, z = q.unbind(-1)
    rows = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def test_unit_quaternion_sandwich_is_the_rotation_matrix():
    torch.manual_seed(0)
    layer = AlgebraRotationLinear(3, 2, "H", bias=False).double()
    q = torch.randn(2, 3, 4, dtype=D64)
    q = q / q.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        layer.weight.copy_(q)
    v = torch.randn(5, 3, 3, dtype=D64)                                  # pure quaternions (0, v)
    x = torch.cat([torch.zeros(5, 3, 1, dtype=D64), v], -1)
    y = layer(x.flatten(1)).unflatten(1, (2, 4))
    expect = torch.einsum("oiab,nib->noa", rotation_matrix(q), v)
    assert torch.allclose(y[..., 1:], expect, atol=1e-12)
    assert torch.allclose(y[..., 0], torch.zeros(5, 2, dtype=D64), atol=1e-12)
    # normalize: any nonzero quaternion acts as the rotation of q / |q|, times the learnable scale
    norm = AlgebraRotationLinear(3, 2, "H", bias=False, normalize=True, eps=0.0).double()
    s = torch.rand(2, 3, dtype=D64)
    with torch.no_grad():
        norm.weight.copy_(q * torch.rand(2, 3, 1, dtype=D64).add(0.5))
        norm.scale.copy_(s)
    y = norm(x.flatten(1)).unflatten(1, (2, 4))
    assert torch.allclose(y[..., 1:], torch.einsum("oi,oiab,nib->noa", s, rotation_matrix(q), v), atol=1e-12)


def explicit(A, w, x, J, normalize=False):
    """y_o = sum_i (w_oi x_i) w̄_oi through Algebra.mul: w (O, I, d), x (N, I, d) -> (N, O, d)."""
    wbar = w @ J.T
    prod = A.mul(A.mul(w[None], x[:, None]), wbar[None])                   # (N, O, I, d)
    if normalize:
        prod = prod / w.square().sum(-1)[None, ..., None]
    return prod.sum(2)


@pytest.mark.parametrize("name,expect", [("C", [1, -1]), ("H", [1, -1, -1, -1]), ("Dual", [1, -1])])
def test_layer_equals_explicit_products(name, expect):
    torch.manual_seed(1)
    A = load_algebra(name)
    J = torch.as_tensor(involution_matrix(A))
    assert torch.equal(J, torch.diag(torch.tensor(expect, dtype=D64)))
    layer = AlgebraRotationLinear(4, 3, name).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(6, 4, A.dim, dtype=D64)
    y = layer(x.flatten(1)).unflatten(1, (3, A.dim))
    assert torch.allclose(y, explicit(A, layer.weight, x, J) + layer.bias, atol=1e-12)
    w0, x0 = layer.weight.detach().clone().requires_grad_(), x.flatten(1)[:2].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda w, x: F.linear(x, rotation_weight(w, A, J, True)), (w0, x0))


def test_matrix_transposition_and_user_involutions():
    torch.manual_seed(2)
    A = load_algebra("M2R")
    J = involution_matrix(A)
    assert np.array_equal(J @ np.arange(4.0), [0.0, 2.0, 1.0, 3.0])                # transpose of [[0, 1], [2, 3]]
    layer = AlgebraRotationLinear(2, 2, A, bias=False).double()
    x = torch.randn(3, 2, 4, dtype=D64)
    Wm, Xm = layer.weight.view(2, 2, 2, 2), x.view(3, 2, 2, 2)
    expect = (Wm[None] @ Xm[:, None] @ Wm.transpose(-1, -2)[None]).sum(2)       # sum_i W X W^T
    assert torch.allclose(layer(x.flatten(1)), expect.flatten(1), atol=1e-12)
    adj = AlgebraRotationLinear(2, 2, A, bias=False, involution=[[0, 0, 0, 1], [0, -1, 0, 0], [0, 0, -1, 0],
                                                                    [1, 0, 0, 0]]).double()
    assert adj(x.flatten(1)).shape == (3, 8)                                     # adjugate: det(W) X summed
    with pytest.raises(ValueError, match="not an anti-involution of M2R"):
        AlgebraRotationLinear(2, 2, A, involution=[1, -1, -1, -1])
    with pytest.raises(ValueError, match="sign vector or a"):
        AlgebraRotationLinear(2, 2, "H", involution=[1, -1])
    with pytest.raises(ValueError, match="no default anti-involution"):
        AlgebraRotationLinear(2, 2, "Cross3")
    assert AlgebraRotationLinear(2, 2, "Cross3", involution=[-1, -1, -1])(torch.randn(1, 6)).shape == (1, 6)


def test_clifford_reversion(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "cl.py").write_text("from codegen.spec import clifford\nCl30 = clifford(3, 0)\n")
    build(specs, tmp_path / "out")
    A = load_algebra("Cl_3_0", path=tmp_path / "out")
    J = involution_matrix(A)
    assert np.array_equal(np.diag(J), [1, 1, 1, 1, -1, -1, -1, -1])             # grades 0 1 1 1 2 2 2 3
    torch.manual_seed(3)
    layer = AlgebraRotationLinear(2, 2, A).double()
    x = torch.randn(4, 2, 8, dtype=D64)
    y = layer(x.flatten(1)).unflatten(1, (2, 8))
    assert torch.allclose(y, explicit(A, layer.weight, x, torch.as_tensor(J)) + layer.bias, atol=1e-12)
    # a rotor exp(-theta/2 e12) rotates vectors in the e1 e2 plane by theta
    t = 0.7
    rotor = torch.zeros(1, 1, 8, dtype=D64)
    rotor[..., 0], rotor[..., 4] = np.cos(t / 2), -np.sin(t / 2)
    one = AlgebraRotationLinear(1, 1, A, bias=False).double()
    with torch.no_grad():
        one.weight.copy_(rotor)
    v = torch.zeros(1, 8, dtype=D64)
    v[0, 1] = 1.0                                                               # e1
    assert torch.allclose(one(v)[0, 1:4], torch.tensor([np.cos(t), np.sin(t), 0.0], dtype=D64), atol=1e-12)


def test_rotation_conv_equals_per_tap_products_and_counts():
    torch.manual_seed(4)
    A = load_algebra("H")
    conv = AlgebraRotationConv2d(2, 3, 3, "H", padding=1, stride=2).double()
    x = torch.randn(2, 8, 5, 5, dtype=D64)
    y = conv(x)
    cols = F.unfold(x, 3, padding=1, stride=2)                                   # (N, 8*9, L)
    cols = cols.view(2, 2, 4, 9, -1).permute(0, 4, 1, 3, 2).reshape(-1, 18, 4)    # (N*L, I*taps, d)
    w = conv.weight.reshape(3, 18, 4)
    ref = explicit(A, w, cols, torch.as_tensor(involution_matrix(A))) + conv.bias   # (N*L, O, d)
    assert torch.allclose(y, ref.view(2, 9, 3, 4).permute(0, 2, 3, 1).reshape(2, 12, 3, 3), atol=1e-12)
    rep = counting.count(conv, x)
    assert rep.total_macs("naive") == 2 * 9 * 3 * 2 * 9 * 16 == rep.total_macs("bilinear")
    lin = AlgebraRotationLinear(5, 7, "C")
    assert counting.count(lin, torch.randn(3, 10)).total_macs("block") == 3 * 5 * 7 * 4
    x.requires_grad_()
    conv(x).square().sum().backward()                                              # exact gradients flow
    assert conv.weight.grad is not None and x.grad is not None
