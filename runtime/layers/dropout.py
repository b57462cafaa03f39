"""Dropout that keeps algebra elements whole: all d components of an element are dropped together."""
from __future__ import annotations

import torch
from torch import nn

from ..checks import require_real_floating
from ..learned_algebra import describe

__all__ = ["AlgebraDropout", "algebra_dropout"]


def algebra_dropout(x: torch.Tensor, p: float, d: int, dim: int = 1, training: bool = True,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero whole elements with probability p and scale the kept ones by 1/(1-p).

    `dim` holds C*d features (element-major); the mask is drawn independently per sample, element and
    position, and shared by the d components of an element.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    dim = dim % x.dim()
    if x.shape[dim] % d:
        raise ValueError(f"dimension {dim} of size {x.shape[dim]} is not a whole number of {d}-component elements")
    xs = x.unflatten(dim, (x.shape[dim] // d, d))
    if p == 1.0:
        return torch.zeros_like(x)
    mask_shape = list(xs.shape)
    mask_shape[dim + 1] = 1
    keep = torch.empty(mask_shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p, generator=generator)
    return (xs * keep / (1.0 - p)).flatten(dim, dim + 1)


class AlgebraDropout(nn.Module):
    """Like nn.Dropout, but drops whole algebra elements along `dim` (1 for (N, C*d, ...), -1 for (..., C*d))."""

    def __init__(self, p: float = 0.5, algebra="R", dim: int = 1):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.dim = p, dim
        self.algebra = describe(algebra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        return algebra_dropout(x, self.p, self.algebra.dim, self.dim, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, algebra={self.algebra.name}, dim={self.dim}"
