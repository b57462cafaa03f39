"""Normalisation for algebra-valued tensors (element-major layout: component k of element c at c*d + k).

`AlgebraBatchNorm1d/2d/3d(num_features, algebra=..., mode=...)`, num_features counted in elements:

- ``mode="component"``: per real component, exactly torch's BatchNorm on the C*d real channels.
  Affine weight and bias (C, d).
- ``mode="whitening"``: per element, centre and multiply by the inverse square root of the d x d
  covariance (plus eps*I), so the output covariance of every element is the identity.  The inverse
  square root is an eigendecomposition in float64 (``compute_dtype``) with a custom backward whose
  divided differences have the closed form -1/(s_i s_j (s_i + s_j)), s = sqrt(eigenvalue): no division
  by eigenvalue gaps, so repeated eigenvalues (degenerate batches) give finite gradients.
  Affine weight (C, d, d) initialised to I, bias (C, d).  Running stats: mean (C, d), cov (C, d, d).
- ``mode="norm"``: per element, centre (``center=True``) and divide the whole element by the root of
  its mean squared norm per component, sqrt(E||x - mu||^2 / d + eps): directions are kept.
  Affine weight (C,) (a real scale per element), bias (C, d).  Running stats: mean (C, d), var (C,).

Running statistics follow torch: ``momentum`` (None = cumulative average), ``num_batches_tracked``,
unbiased estimates in the running buffers, batch statistics in training or when
``track_running_stats=False``; ``reset_running_stats()`` / ``reset_parameters()``.

`AlgebraLayerNorm(num_elements, algebra=..., mode="component"|"norm")` normalises the last dimension
(num_elements * d reals) of each sample.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import require_real_floating
from ..learned_algebra import describe

__all__ = ["AlgebraBatchNorm1d", "AlgebraBatchNorm2d", "AlgebraBatchNorm3d", "AlgebraLayerNorm",
           "inv_sqrtm_psd", "NORM_MODES", "unit_view", "covariance", "apply_matrix", "normalize_units",
           "affine_parameters", "reset_affine_"]

NORM_MODES = ("component", "whitening", "norm")

class _InvSqrtPSD(torch.autograd.Function):
    """V^{-1/2} for symmetric positive (semi)definite V (..., d, d); eigenvalues floored at `floor`."""

    @staticmethod
    def forward(ctx, V, floor, compute_dtype):
        Vc = V.to(compute_dtype)
        Vc = 0.5 * (Vc + Vc.mT)
        lam, Q = torch.linalg.eigh(Vc)
        lam = lam.clamp_min(floor)
        s = lam.sqrt()
        out = (Q / s.unsqueeze(-2)) @ Q.mT
        ctx.save_for_backward(Q, s, V)
        ctx.in_dtype = V.dtype
        ctx.floor, ctx.compute_dtype = floor, compute_dtype
        return out.to(V.dtype)

    @staticmethod
    def backward(ctx, G):
        Q, s, V = ctx.saved_tensors
        if torch.is_grad_enabled():             # create_graph=True: a backward autograd can differentiate again
            return _inv_sqrt_grad_differentiable(V, G, ctx.floor, ctx.compute_dtype), None, None
        G = G.to(Q.dtype)
        G = 0.5 * (G + G.mT)
        M = Q.mT @ G @ Q
        si, sj = s.unsqueeze(-1), s.unsqueeze(-2)
        K = -1.0 / (si * sj * (si + sj))          # divided difference of t -> t^{-1/2}, exact at ties
        dV = Q @ (K * M) @ Q.mT
        return dV.to(ctx.in_dtype), None, None


def _inv_sqrt_grad_differentiable(V: torch.Tensor, G: torch.Tensor, floor: float, compute_dtype) -> torch.Tensor:
    """The same gradient as _InvSqrtPSD.backward through differentiable ops: with X = V^{-1/2} and S = X^{-1},
    dV is the H solving S H + H S = -X sym(G) X (the eigenbasis form above is this solution), solved as one
    d^2 x d^2 system, with X from _InvSqrtPSD itself, so derivatives of every order stay exact."""
    d = V.shape[-1]
    Vc = V.to(compute_dtype)
    X = _InvSqrtPSD.apply(0.5 * (Vc + Vc.mT), floor, compute_dtype)
    S = torch.linalg.inv(X)
    Gc = G.to(compute_dtype)
    R = -(X @ (0.5 * (Gc + Gc.mT)) @ X)
    eye = torch.eye(d, dtype=compute_dtype, device=V.device).expand_as(S)
    kron = lambda a, b: torch.einsum("...ij,...kl->...ikjl", a, b).reshape(*a.shape[:-2], d * d, d * d)
    H = torch.linalg.solve(kron(S, eye) + kron(eye, S), R.reshape(*R.shape[:-2], d * d, 1))
    return H.reshape(R.shape).to(V.dtype)


def inv_sqrtm_psd(V: torch.Tensor, eps: float = 0.0, compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Inverse square root of a batch of symmetric PSD matrices (..., d, d), computed in `compute_dtype`.

    Adds eps*I first; eigenvalues are floored at max(eps, tiny) so the result is always finite.
    """
    d = V.shape[-1]
    if eps:
        V = V + eps * torch.eye(d, dtype=V.dtype, device=V.device)
    floor = max(float(eps), torch.finfo(compute_dtype).tiny ** 0.5)
    return _InvSqrtPSD.apply(V, floor, compute_dtype)


# ------------------------------------------------------------------------ statistics, shared by the norms
# A "unit" is what one set of statistics normalises: a channel (batch norm), a sample's channel (instance
# norm), a sample's group of channels (group norm).  xs holds the d components along dim `comp`; the dims
# `red` are the samples of one unit; the remaining dims (all before `comp`) index the units, so per-unit
# statistics have shape (*unit, d) / (*unit, d, d) / (*unit,).

def unit_view(stat: torch.Tensor, x: torch.Tensor, red: Sequence[int]) -> torch.Tensor:
    """Per-unit statistics (*unit, d) (or (*unit, 1)) -> broadcastable against x (size 1 at the dims `red`)."""
    sizes = iter(stat.shape)
    return stat.reshape([1 if i in red else next(sizes) for i in range(x.dim())])


def covariance(xc: torch.Tensor, comp: int, red: Sequence[int]) -> torch.Tensor:
    """Biased covariance of the components of centred xc over the dims `red`: (*unit, d, d)."""
    D = xc.dim()
    idx = list(range(D))
    other = idx.copy()
    other[comp] = D
    unit = [i for i in idx if i != comp and i not in red]
    return torch.einsum(xc, idx, xc, other, unit + [comp, D]) / math.prod([xc.shape[i] for i in red])


def apply_matrix(M: torch.Tensor, x: torch.Tensor, comp: int, red: Sequence[int]) -> torch.Tensor:
    """y[..., a, ...] = sum_b M[*unit, a, b] x[..., b, ...]: one d x d matrix per unit, shared over `red`."""
    D = x.dim()
    idx = list(range(D))
    src = idx.copy()
    src[comp] = D
    unit = [i for i in idx if i != comp and i not in red]
    return torch.einsum(M, unit + [comp, D], x, src, idx)


def normalize_units(xs: torch.Tensor, comp: int, red: Sequence[int], mode: str, eps: float,
                    compute_dtype: torch.dtype = torch.float64, center: bool = True,
                    mean: torch.Tensor | None = None, second: torch.Tensor | None = None,
                    weight: torch.Tensor | None = None):
    """Normalise every unit of xs (see above); returns (y, mean, second).

    mode "component": per unit and component, (x - mean) / sqrt(var + eps); second = var (*unit, d).
         "whitening": per unit, cov^{-1/2} (x - mean) (`inv_sqrtm_psd`, eps*I added); second = cov (*unit, d, d).
         "norm":      per unit, (x - mean) / sqrt(E||x - mean||^2 / d + eps); second (*unit,).
    The batch statistics are biased; pass `mean` / `second` to use given (running) statistics instead.
    center=False: no mean is subtracted (mean is returned as zeros).  weight: an affine weight that
    broadcasts against the unit scale ((*unit, d), (*unit, d, d) applied on the left, (*unit,)), fused in.
    """
    if not center:
        mean = xs.new_zeros([n for i, n in enumerate(xs.shape) if i not in red])
        xc = xs
    else:
        if mean is None:
            mean = xs.mean(red)
        xc = xs - unit_view(mean, xs, red)
    if second is None:
        if mode == "whitening":
            second = covariance(xc, comp, red)
        else:
            second = xc.square().mean(red)
            if mode == "norm":
                second = second.mean(-1)
    if mode == "whitening":
        M = inv_sqrtm_psd(second, eps, compute_dtype).to(xs.dtype)
        y = apply_matrix(M if weight is None else weight @ M, xc, comp, red)
    else:
        scale = torch.rsqrt(second + eps)
        if weight is not None:
            scale = scale * weight
        y = xc * unit_view(scale.unsqueeze(-1) if mode == "norm" else scale, xs, red)
    return y, mean, second


def affine_parameters(mode: str, C: int, d: int, factory: dict) -> tuple[nn.Parameter, nn.Parameter]:
    """(weight, bias) of an affine norm over C elements: weight (C, d) component, (C, d, d) whitening, (C,)
    norm (a real scale per element); bias (C, d).  Uninitialised: see `reset_affine_`."""
    shape = {"whitening": (C, d, d), "norm": (C,)}.get(mode, (C, d))
    return nn.Parameter(torch.empty(shape, **factory)), nn.Parameter(torch.empty(C, d, **factory))


@torch.no_grad()
def reset_affine_(weight: torch.Tensor, bias: torch.Tensor, mode: str) -> None:
    """Identity affine map: weight 1 (I for whitening), bias 0."""
    if mode == "whitening":
        weight.copy_(torch.eye(weight.shape[-1]).expand_as(weight))
    else:
        weight.fill_(1)
    bias.zero_()


class AlgebraBatchNormBase(nn.Module):
    _not_an_algebra_layer = True          # its (C, d, d) whitening weight is not a layer weight

    def __init__(self, num_features: int, algebra="R", mode: str = "component", eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 center: bool = True, compute_dtype: torch.dtype = torch.float64, device=None, dtype=None):
        super().__init__()
        if mode not in NORM_MODES:
            raise ValueError(f"mode must be one of {NORM_MODES}, got {mode!r}")
        self.algebra = describe(algebra)
        d = self.algebra.dim
        self.num_features = int(num_features)
        self.mode = mode
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.center = center
        self.compute_dtype = compute_dtype
        fk = {"device": device, "dtype": dtype}
        C = self.num_features
        if affine:
            self.weight, self.bias = affine_parameters(mode, C, d, fk)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(C, d, **fk))
            if mode == "whitening":
                self.register_buffer("running_cov", torch.eye(d, **fk).repeat(C, 1, 1))
            elif mode == "norm":
                self.register_buffer("running_var", torch.ones(C, **fk))
            else:
                self.register_buffer("running_var", torch.ones(C, d, **fk))
            self.register_buffer("num_batches_tracked",
                                 torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var" if mode != "whitening" else "running_cov", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    # torch-like API ---------------------------------------------------------------------------
    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            if self.mode == "whitening":
                self.running_cov.copy_(torch.eye(self.algebra.dim).expand_as(self.running_cov))
            else:
                self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            reset_affine_(self.weight, self.bias, self.mode)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, algebra={self.algebra.name}, mode={self.mode!r}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def _check_input_dim(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    # forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        self._check_input_dim(x)
        d, C = self.algebra.dim, self.num_features
        if x.shape[1] != C * d:
            raise ValueError(f"{type(self).__name__}: expected {C} elements x {d} components = {C * d} "
                             f"channels, got input of shape {tuple(x.shape)}")
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or not self.track_running_stats
        if self.mode == "component":
            return self._component(x, use_batch, factor)
        xs = x.unflatten(1, (C, d))                            # (N, C, d, *spatial)
        n = xs.shape[0] * math.prod(xs.shape[3:])
        if use_batch and self.training and n <= 1:
            raise ValueError(f"Expected more than 1 value per element when training, got input size {tuple(x.shape)}")
        second = "running_cov" if self.mode == "whitening" else "running_var"
        return self._normalize(xs, use_batch, factor, n, second).flatten(1, 2)

    def _component(self, x, use_batch, factor):
        rm = self.running_mean.view(-1) if self.running_mean is not None else None
        rv = self.running_var.view(-1) if self.running_var is not None else None
        w = self.weight.reshape(-1) if self.affine else None
        b = self.bias.reshape(-1) if self.affine else None
        return F.batch_norm(x, rm, rv, w, b, use_batch, factor, self.eps)

    def _normalize(self, xs, use_batch, factor, n, second_name):
        """Whitening / norm modes on xs (N, C, d, *spatial): batch or running statistics, fused affine."""
        red = [0] + list(range(3, xs.dim()))
        w = self.weight if self.affine else None
        if use_batch:
            y, mean, second = normalize_units(xs, 2, red, self.mode, self.eps, self.compute_dtype, self.center,
                                              weight=w)
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                    running = getattr(self, second_name)
                    running.lerp_((second.detach() * (n / max(n - 1, 1))).to(running.dtype), factor)
        else:
            y, _, _ = normalize_units(xs, 2, red, self.mode, self.eps, self.compute_dtype, self.center,
                                      self.running_mean, getattr(self, second_name), w)
        if self.affine:
            y = y + unit_view(self.bias, xs, red)
        return y


class AlgebraBatchNorm1d(AlgebraBatchNormBase):
    """Batch norm over (N, C*d) or (N, C*d, L) inputs; C = num_features elements."""

    def _check_input_dim(self, x):
        if x.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {x.dim()}D input)")


class AlgebraBatchNorm2d(AlgebraBatchNormBase):
    """Batch norm over (N, C*d, H, W) inputs; C = num_features elements."""

    def _check_input_dim(self, x):
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (got {x.dim()}D input)")


class AlgebraBatchNorm3d(AlgebraBatchNormBase):
    """Batch norm over (N, C*d, D, H, W) inputs; C = num_features elements."""

    def _check_input_dim(self, x):
        if x.dim() != 5:
            raise ValueError(f"expected 5D input (got {x.dim()}D input)")


class AlgebraLayerNorm(nn.Module):
    """Layer norm over the last dimension (num_elements * d reals) of each sample.

    ``mode="component"``: torch's LayerNorm over all C*d reals, affine weight/bias (C, d).
    ``mode="norm"``: subtract the mean element (per component, ``center=True``), divide by
    sqrt(mean_c ||x_c||^2 / d + eps); affine weight (C,) real scale per element, bias (C, d).
    """

    _not_an_algebra_layer = True

    def __init__(self, num_elements: int, algebra="R", mode: str = "component", eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, center: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if mode not in ("component", "norm"):
            raise ValueError(f"AlgebraLayerNorm mode must be 'component' or 'norm', got {mode!r}")
        self.algebra = describe(algebra)
        self.num_elements = int(num_elements)
        self.mode, self.eps, self.center = mode, eps, center
        self.elementwise_affine = elementwise_affine
        d = self.algebra.dim
        fk = {"device": device, "dtype": dtype}
        if elementwise_affine:
            shape = (self.num_elements, d) if mode == "component" else (self.num_elements,)
            self.weight = nn.Parameter(torch.ones(shape, **fk))
            self.bias = nn.Parameter(torch.zeros(self.num_elements, d, **fk)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (f"{self.num_elements}, algebra={self.algebra.name}, mode={self.mode!r}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        C, d = self.num_elements, self.algebra.dim
        if x.shape[-1] != C * d:
            raise ValueError(f"AlgebraLayerNorm: expected last dimension {C}*{d} = {C * d}, got {tuple(x.shape)}")
        if self.mode == "component":
            w = self.weight.reshape(-1) if self.weight is not None else None
            b = self.bias.reshape(-1) if self.bias is not None else None
            return F.layer_norm(x, (C * d,), w, b, self.eps)
        xs = x.unflatten(-1, (C, d))
        if self.center:
            xs = xs - xs.mean(dim=-2, keepdim=True)
        ms = xs.square().sum(-1).mean(-1, keepdim=True) / d                     # (..., 1)
        scale = torch.rsqrt(ms + self.eps).unsqueeze(-1)                       # (..., 1, 1)
        y = xs * scale
        if self.weight is not None:
            y = y * self.weight.unsqueeze(-1)
        if self.bias is not None:
            y = y + self.bias
        return y.flatten(-2)
