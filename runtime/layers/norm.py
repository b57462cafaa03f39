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

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import require_real_floating
from ..registry import load_algebra

__all__ = ["AlgebraBatchNorm1d", "AlgebraBatchNorm2d", "AlgebraBatchNorm3d", "AlgebraLayerNorm",
           "inv_sqrtm_psd", "NORM_MODES"]

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


class _AlgebraBatchNorm(nn.Module):
    _not_an_algebra_layer = True          # its (C, d, d) whitening weight is not a layer weight

    def __init__(self, num_features: int, algebra="R", mode: str = "component", eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 center: bool = True, compute_dtype: torch.dtype = torch.float64, device=None, dtype=None):
        super().__init__()
        if mode not in NORM_MODES:
            raise ValueError(f"mode must be one of {NORM_MODES}, got {mode!r}")
        self.algebra = load_algebra(algebra)
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
            if mode == "whitening":
                self.weight = nn.Parameter(torch.empty(C, d, d, **fk))
            elif mode == "norm":
                self.weight = nn.Parameter(torch.empty(C, **fk))
            else:
                self.weight = nn.Parameter(torch.empty(C, d, **fk))
            self.bias = nn.Parameter(torch.empty(C, d, **fk))
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
            with torch.no_grad():
                if self.mode == "whitening":
                    self.weight.copy_(torch.eye(self.algebra.dim).expand_as(self.weight))
                else:
                    self.weight.fill_(1)
                self.bias.zero_()

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
        if self.mode == "whitening":
            y = self._whiten(xs, use_batch, factor, n)
        else:
            y = self._norm(xs, use_batch, factor, n)
        return y.flatten(1, 2)

    def _component(self, x, use_batch, factor):
        rm = self.running_mean.view(-1) if self.running_mean is not None else None
        rv = self.running_var.view(-1) if self.running_var is not None else None
        w = self.weight.reshape(-1) if self.affine else None
        b = self.bias.reshape(-1) if self.affine else None
        return F.batch_norm(x, rm, rv, w, b, use_batch, factor, self.eps)

    def _shape(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """(C, d) statistics -> broadcastable against (N, C, d, *spatial)."""
        return t.reshape(t.shape + (1,) * (ndim - 3))

    def _whiten(self, xs, use_batch, factor, n):
        d = self.algebra.dim
        red = [0] + list(range(3, xs.dim()))
        if use_batch:
            mean = xs.mean(dim=red)                                         # (C, d)
            xc = xs - self._shape(mean, xs.dim()).unsqueeze(0)
            flat = xc.movedim(1, 0).movedim(2, 1).reshape(self.num_features, d, -1)   # (C, d, n)
            cov = flat @ flat.mT / n                                        # biased, (C, d, d)
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                    unbiased = cov.detach() * (n / max(n - 1, 1))
                    self.running_cov.lerp_(unbiased.to(self.running_cov.dtype), factor)
        else:
            mean, cov = self.running_mean, self.running_cov
            xc = xs - self._shape(mean, xs.dim()).unsqueeze(0)
        Wm = inv_sqrtm_psd(cov, self.eps, self.compute_dtype).to(xs.dtype)   # (C, d, d)
        if self.affine:
            Wm = self.weight @ Wm
        y = torch.einsum("cij,ncj...->nci...", Wm, xc)
        if self.affine:
            y = y + self._shape(self.bias, xs.dim()).unsqueeze(0)
        return y

    def _norm(self, xs, use_batch, factor, n):
        d = self.algebra.dim
        red = [0] + list(range(3, xs.dim()))
        if use_batch:
            mean = xs.mean(dim=red) if self.center else xs.new_zeros(self.num_features, d)
            xc = xs - self._shape(mean, xs.dim()).unsqueeze(0)
            sq = xc.square().sum(2)                                          # (N, C, *spatial)
            var = sq.mean(dim=[0] + list(range(2, sq.dim()))) / d            # (C,)
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                    self.running_var.lerp_((var.detach() * (n / max(n - 1, 1))).to(self.running_var.dtype),
                                           factor)
        else:
            mean = self.running_mean if self.center else torch.zeros_like(self.running_mean)
            var = self.running_var
            xc = xs - self._shape(mean, xs.dim()).unsqueeze(0)
        scale = torch.rsqrt(var + self.eps)                                  # (C,)
        if self.affine:
            scale = scale * self.weight
        y = xc * scale.reshape((1, -1) + (1,) * (xs.dim() - 2))
        if self.affine:
            y = y + self._shape(self.bias, xs.dim()).unsqueeze(0)
        return y


class AlgebraBatchNorm1d(_AlgebraBatchNorm):
    """Batch norm over (N, C*d) or (N, C*d, L) inputs; C = num_features elements."""

    def _check_input_dim(self, x):
        if x.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {x.dim()}D input)")


class AlgebraBatchNorm2d(_AlgebraBatchNorm):
    """Batch norm over (N, C*d, H, W) inputs; C = num_features elements."""

    def _check_input_dim(self, x):
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (got {x.dim()}D input)")


class AlgebraBatchNorm3d(_AlgebraBatchNorm):
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
        self.algebra = load_algebra(algebra)
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
