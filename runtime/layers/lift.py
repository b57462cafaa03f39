"""Lift real data into an algebra network and read real outputs back out.

`AlgebraLift(in_features, algebra=..., mode=...)` maps real features along `dim` (1 for (N, F, ...)
images or tables, -1 for (..., F) sequences) to algebra elements in the element-major layout:

- ``mode="embed"`` (no parameters): every real feature x_f becomes the element x_f * u, u the algebra's
  unit (basis element 0 when the algebra has no unit, e.g. Cross3).  out elements = in_features.
- ``mode="linear"``: a learned real map from in_features reals to out_features * d reals (for images a
  1x1 convolution), i.e. "a reshaped real layer".

`AlgebraReadout(in_features, out_features, algebra=..., mode=...)` maps in_features elements along `dim`
(default -1, like nn.Linear) to out_features reals:

- ``mode="linear"``: a real linear layer over all in_features * d flattened components.
- ``mode="norm"``: a real linear layer over the in_features element norms (invariant to the element's
  direction).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import require_real_floating
from ..learned_algebra import describe

__all__ = ["AlgebraLift", "AlgebraReadout"]


def _linear_along(x: torch.Tensor, weight: torch.Tensor, bias, dim: int) -> torch.Tensor:
    dim = dim % x.dim()
    if dim == x.dim() - 1:
        return F.linear(x, weight, bias)
    return F.linear(x.movedim(dim, -1), weight, bias).movedim(-1, dim)


class AlgebraLift(nn.Module):
    def __init__(self, in_features: int, algebra="R", out_features: int | None = None, mode: str = "embed",
                 dim: int = 1, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.algebra = describe(algebra)
        self.in_features, self.mode, self.dim = int(in_features), mode, dim
        d = self.algebra.dim
        if mode == "embed":
            if out_features not in (None, in_features):
                raise ValueError("mode='embed' maps each real feature to one element: out_features must equal "
                                 "in_features (use mode='linear' to change the width)")
            self.out_features = self.in_features
            u = self.algebra.unit if self.algebra.unit is not None else [1.0] + [0.0] * (d - 1)
            self.register_buffer("direction", torch.as_tensor(u, dtype=dtype or torch.get_default_dtype(),
                                                              device=device), persistent=False)
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        elif mode == "linear":
            self.out_features = int(out_features if out_features is not None else in_features)
            self.weight = nn.Parameter(torch.empty(self.out_features * d, self.in_features, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.empty(self.out_features * d, device=device, dtype=dtype)) if bias else None
            self.reset_parameters()
        else:
            raise ValueError(f"mode must be 'embed' or 'linear', got {mode!r}")

    def reset_parameters(self) -> None:
        if self.weight is None:
            return
        # unit-variance inputs give unit-variance components
        nn.init.normal_(self.weight, 0.0, 1.0 / math.sqrt(self.in_features))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        dim = self.dim % x.dim()
        if x.shape[dim] != self.in_features:
            raise ValueError(f"AlgebraLift: expected {self.in_features} real features along dim {self.dim}, "
                             f"got {tuple(x.shape)}")
        if self.mode == "linear":
            return _linear_along(x, self.weight, self.bias, dim)
        u = self.direction.to(dtype=x.dtype)
        shape = [1] * (x.dim() + 1)
        shape[dim + 1] = -1
        return (x.unsqueeze(dim + 1) * u.reshape(shape)).flatten(dim, dim + 1)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, algebra={self.algebra.name}, mode={self.mode!r}, "
                f"dim={self.dim}")


class AlgebraReadout(nn.Module):
    def __init__(self, in_features: int, out_features: int, algebra="R", mode: str = "linear", dim: int = -1,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.algebra = describe(algebra)
        if mode not in ("linear", "norm"):
            raise ValueError(f"mode must be 'linear' or 'norm', got {mode!r}")
        self.in_features, self.out_features, self.mode, self.dim = int(in_features), int(out_features), mode, dim
        n_in = self.in_features * (self.algebra.dim if mode == "linear" else 1)
        self.weight = nn.Parameter(torch.empty(self.out_features, n_in, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(self.out_features, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))          # torch's nn.Linear default
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight.shape[1])
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        d = self.algebra.dim
        dim = self.dim % x.dim()
        if x.shape[dim] != self.in_features * d:
            raise ValueError(f"AlgebraReadout: expected {self.in_features}*{d} features along dim {self.dim}, "
                             f"got {tuple(x.shape)}")
        if self.mode == "norm":
            x = x.unflatten(dim, (self.in_features, d)).square().sum(dim + 1).add(1e-12).sqrt()
        return _linear_along(x, self.weight, self.bias, dim)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, algebra={self.algebra.name}, mode={self.mode!r}"
