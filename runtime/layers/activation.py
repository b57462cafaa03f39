"""Activations for algebra-valued tensors (element-major layout, elements along `dim`).

- `SplitActivation(act)`: any real activation applied to every component independently ("split").
- `NormGatedActivation(num_elements, algebra=..., gate="relu")`: keeps each element's direction and
  gates its norm, y = x * g(||x|| + b) / ||x|| with a learnable real b per element; gate="relu" is
  modReLU (`ModReLU`).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import require_real_floating
from ..learned_algebra import describe

__all__ = ["SplitActivation", "NormGatedActivation", "ModReLU", "real_activation", "element_norm"]

_ACTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "elu": F.elu, "leaky_relu": F.leaky_relu, "softplus": F.softplus, "identity": lambda t: t,
    "mish": F.mish, "selu": F.selu,
}


def real_activation(act) -> Callable[[torch.Tensor], torch.Tensor]:
    """A real activation from a name ('relu', 'gelu', ...), a module or a callable."""
    if isinstance(act, str):
        try:
            return _ACTS[act.lower()]
        except KeyError:
            raise ValueError(f"unknown activation {act!r}; known: {', '.join(sorted(_ACTS))}") from None
    if callable(act):
        return act
    raise TypeError(f"activation must be a name or a callable, got {type(act).__name__}")


def element_norm(x: torch.Tensor, d: int, dim: int = 1, eps: float = 0.0) -> torch.Tensor:
    """Euclidean norm of every element: (..., C*d, ...) -> (..., C, ...) along `dim`."""
    sq = x.unflatten(dim, (-1, d)).square().sum(dim + 1 if dim >= 0 else dim)
    return sq.clamp_min(eps * eps).sqrt() if eps else sq.sqrt()


class SplitActivation(nn.Module):
    """Apply a real activation to every component: the layout is unchanged, so any shape works."""

    def __init__(self, activation="relu", algebra=None):
        super().__init__()
        self.algebra = describe(algebra) if algebra is not None else None
        self.name = activation if isinstance(activation, str) else getattr(activation, "__name__",
                                                                             type(activation).__name__)
        if isinstance(activation, nn.Module):
            self.act = activation               # registered: its parameters train too
        else:
            self._fn = real_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        return self.act(x) if hasattr(self, "act") else self._fn(x)

    def extra_repr(self) -> str:
        return f"{self.name}" + (f", algebra={self.algebra.name}" if self.algebra is not None else "")


class NormGatedActivation(nn.Module):
    """y = x * g(||x|| + b) / ||x|| per element, b (num_elements,) learnable.

    `dim` is the element dimension of size num_elements*d (1 for (N, C*d, ...) tensors, -1 for
    (..., C*d)).  ||x|| is floored at `eps` so zero elements give zero output and finite gradients.
    """

    def __init__(self, num_elements: int, algebra="R", gate="relu", dim: int = 1, eps: float = 1e-6,
                 bias_init: float = 0.0, device=None, dtype=None):
        super().__init__()
        self.algebra = describe(algebra)
        self.num_elements, self.dim, self.eps = int(num_elements), dim, eps
        self.gate_name = gate if isinstance(gate, str) else type(gate).__name__
        self._gate = real_activation(gate)
        self.bias_init = bias_init
        self.bias = nn.Parameter(torch.full((self.num_elements,), float(bias_init), device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.bias, self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        d = self.algebra.dim
        dim = self.dim % x.dim()
        if x.shape[dim] != self.num_elements * d:
            raise ValueError(f"{type(self).__name__}: expected {self.num_elements}*{d} features along dim "
                             f"{self.dim}, got shape {tuple(x.shape)}")
        xs = x.unflatten(dim, (self.num_elements, d))
        norm = xs.square().sum(dim + 1, keepdim=True).clamp_min(self.eps ** 2).sqrt()
        b = self.bias.reshape((-1, 1) + (1,) * (xs.dim() - dim - 2))
        y = xs * (self._gate(norm + b) / norm)
        return y.flatten(dim, dim + 1)

    def extra_repr(self) -> str:
        return f"{self.num_elements}, algebra={self.algebra.name}, gate={self.gate_name!r}, dim={self.dim}"


class ModReLU(NormGatedActivation):
    """modReLU: y = x * relu(||x|| + b) / ||x||."""

    def __init__(self, num_elements: int, algebra="R", dim: int = 1, eps: float = 1e-6, bias_init: float = 0.0,
                 device=None, dtype=None):
        super().__init__(num_elements, algebra, "relu", dim, eps, bias_init, device, dtype)
