"""`AlgebraLinear`: a fully connected layer over an algebra, weight on the left.

    layer = AlgebraLinear(in_features, out_features, algebra="H", bias=True, method=None)
    y = layer(x)            # x (..., in_features * d) -> (..., out_features * d)

Parameters: weight (out_features, in_features, d), bias (out_features, d);  y_o = sum_i w_oi * x_i + b_o.
`method` (one of runtime.methods.METHODS, None = the global default) picks how
the product is computed (see runtime/methods/table.py); all give the same result up to rounding.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .. import functional as AF
from .. import methods
from ..learned_algebra import LearnedAlgebra, LearnedSpec
from ..registry import Algebra

__all__ = ["AlgebraLinear", "AlgebraLayerMixin", "default_init_"]


def default_init_(weight: torch.Tensor, bias: torch.Tensor | None, algebra: Algebra, fan_in: int) -> None:
    """Variance-preserving default: each weight component uniform with variance 1 / (fan_in * s), where
    s = mean_k sum_ij T[i,j,k]^2 (so Var(y_k) ~ Var(x) for independent zero-mean components); bias zero.

    fan_in counts algebra elements (in_features, or in_channels // groups * prod(kernel_size)).  For a
    per-component profile (e.g. Dual numbers) or He/Glorot gains use runtime.init via `init=`."""
    s = AF.structure_scale(algebra)
    bound = math.sqrt(3.0 / (max(fan_in, 1) * s))
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        if bias is not None:
            bias.zero_()


class AlgebraLayerMixin:
    """Algebra bookkeeping shared by the linear and conv layers: the Algebra (it pickles and deep-copies by
    name, see runtime.registry) and the method setting.  The scheme and block constants come from the
    Algebra's cache in the weight's dtype and device, made from the float64 values, so `.double()` or `.to()`
    never round them through a lower precision."""

    def _reset_parameters(self, fan_in: int) -> None:
        """The layer's `init=` initialiser (bias zero), or `default_init_` with fan_in in elements.  A learned
        algebra the layer owns is moved to the weight's device and dtype and re-drawn first (PHM)."""
        if getattr(self, "_owns_structure", False):
            self.algebra.to(device=self.weight.device, dtype=self.weight.dtype)
            self.algebra.reset_parameters()
        if self.init is not None:
            self.init(self.weight, self.algebra)
            if self.bias is not None:
                with torch.no_grad():
                    self.bias.zero_()
        else:
            default_init_(self.weight, self.bias, self.algebra, fan_in)

    def _setup_algebra(self, algebra, method, who: str) -> Algebra | LearnedAlgebra:
        """Resolve and keep the algebra; a learned one named by a spec gets this layer's own structure
        (a LearnedAlgebra submodule, parameter `algebra.T`)."""
        A = AF.resolve_algebra(algebra, who)
        if method is not None:
            methods.check(method, who)
        self._owns_structure = isinstance(A, LearnedSpec)
        if self._owns_structure:
            A = LearnedAlgebra(A)
        self.algebra = A
        self.method = method
        return A

    @property
    def effective_method(self) -> str:
        """The method setting in force for this layer (before `auto` resolves it per call)."""
        return self.method if self.method is not None else AF.get_default_method()


class AlgebraLinear(AlgebraLayerMixin, nn.Module):
    """y_o = sum_i w_oi * x_i + b_o over an algebra (weight left); features counted in algebra elements.

    Args:
        in_features, out_features: numbers of algebra elements.
        algebra: a name such as "H", an Algebra (runtime.load_algebra), or a learned algebra
            (runtime.learned(d) or "PHM<d>": the layer owns a trainable structure tensor).
        bias: learn a bias (out_features, d).
        method: one of runtime.methods.METHODS ("auto", "block", "fold", "bilinear", "kernel") or None (the
            global default, runtime.methods.set_default_method).
        device, dtype: factory arguments as in torch.nn.Linear.
        init: optional callable init(weight, algebra) replacing the default weight initialisation
            (e.g. runtime.init.kaiming_normal_); the bias is then zeroed.

    Shapes: input (..., in_features * d) element-major, output (..., out_features * d).
    """

    def __init__(self, in_features: int, out_features: int, algebra, bias: bool = True, method: str | None = None,
                 device=None, dtype=None, init: Callable | None = None) -> None:
        super().__init__()
        for label, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"AlgebraLinear: {label} must be a positive int (a number of algebra elements), "
                                 f"got {v!r}")
        A = self._setup_algebra(algebra, method, "AlgebraLinear")
        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, A.dim, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, A.dim, **factory))
        else:
            self.register_parameter("bias", None)
        self._who = f"AlgebraLinear(in_features={in_features}, out_features={out_features}, algebra={A.name})"
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset_parameters(self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return AF.linear_impl(x, self.weight, self.bias, self.algebra, self.method, self._who)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, algebra={self.algebra.name}, "
                f"method={self.method or 'default (' + AF.get_default_method() + ')'}, bias={self.bias is not None}")
