"""Variance-preserving initialisation for algebra layers, derived from the structure tensor.

For a layer y_o = sum_i w_oi * x_i (weight left) with zero-mean independent weight components of
variance sigma_w,i^2 and input components of variance sigma_x^2, output component k has

    Var(y_k) = fan_in * sigma_x^2 * sum_i S[i, k] sigma_w,i^2,      S[i, k] = sum_j T[i, j, k]^2

(docs/design.md, "Initialisation").  S counts, per output component, the number and size of the structure
constants that feed it.  `variance_profile(A)` solves  sum_i S[i, k] p_i = 1  for every fed output
component k with p >= 0 (the minimum-norm solution, which is uniform for C, H, Cross3 and MnR), so
that drawing w_i with variance  gain^2 * p_i / fan  keeps *every* output component at the input variance.

Dual numbers (1, eps) are the case where a single weight variance cannot work: the 1-component is fed
by one constant and the eps-component by two, so any common weight variance makes the eps component
grow geometrically with depth.  The exact solution is p = (1, 0): the eps-component of the weights
starts at zero, and both output components keep the input variance through any depth.

He (`kaiming_*`) uses fan = fan_in and gain^2 = 2 for ReLU (split ReLU halves each component's second
moment); Glorot (`xavier_*`) uses fan = (fan_in + fan_out) / 2.  Fans count algebra elements:
weight shape (out, in // groups, *kernel, d) gives fan_in = in // groups * prod(kernel) and
fan_out = out * prod(kernel), as in torch.nn.init.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
from torch import nn

from .registry import Algebra, load_algebra

__all__ = [
    "structure_second_moments", "variance_profile", "algebra_fans", "component_std",
    "kaiming_normal_", "kaiming_uniform_", "xavier_normal_", "xavier_uniform_",
    "init_weight_", "init_model_", "algebra_layers", "is_algebra_layer",
]


def _alg(algebra) -> Algebra:
    return load_algebra(algebra)


def structure_second_moments(algebra) -> np.ndarray:
    """S[i, k] = sum_j T[i, j, k]^2: how strongly weight component i feeds output component k. (d, d)."""
    T = _alg(algebra).structure
    return np.einsum("ijk,ijk->ik", T, T)


def _nnls(A: np.ndarray, b: np.ndarray, iters: int = 2000) -> np.ndarray:
    """Small non-negative least squares min ||A p - b|| s.t. p >= 0 (projected gradient; d <= a few dozen)."""
    p = np.clip(np.linalg.lstsq(A, b, rcond=None)[0], 0, None)
    L = np.linalg.norm(A, 2) ** 2 or 1.0
    for _ in range(iters):
        p_new = np.clip(p - A.T @ (A @ p - b) / L, 0, None)
        if np.max(np.abs(p_new - p)) < 1e-15:
            break
        p = p_new
    return p


def variance_profile(algebra) -> np.ndarray:
    """Relative weight-component variances p (d,), p >= 0, with sum_i S[i,k] p_i = 1 for every fed k.

    Multiply by gain^2 / fan to get the variances.  Cached per algebra.
    """
    A = _alg(algebra)
    if A.cache.variance_profile is not None:
        return A.cache.variance_profile
    S = structure_second_moments(A)
    fed = S.sum(axis=0) > 0                      # output components some constant feeds
    M = S[:, fed].T                              # (n_fed, d): rows are the equations
    b = np.ones(M.shape[0])
    p = np.linalg.pinv(M) @ b                    # minimum-norm solution
    if not (np.allclose(M @ p, b, atol=1e-9) and (p >= -1e-12).all()):
        p = _nnls(M, b)
    p = np.clip(p, 0.0, None)
    p[np.abs(p) < 1e-12] = 0.0
    A.cache.variance_profile = p
    return p


def algebra_fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) in algebra elements for a weight of shape (out, in, *kernel, d).  A transposed
    convolution's weight (in, out // groups, *kernel, d) is read the same way, as torch.nn.init reads
    nn.ConvTranspose weights."""
    if weight.dim() < 3:
        raise ValueError(f"an algebra weight has shape (out, in, *kernel, d), got {tuple(weight.shape)}")
    receptive = math.prod(weight.shape[2:-1]) if weight.dim() > 3 else 1
    return int(weight.shape[1]) * receptive, int(weight.shape[0]) * receptive


def component_std(algebra, fan: float, gain: float = 1.0) -> np.ndarray:
    """Per-component standard deviation (d,) of the weights: sqrt(gain^2 * p / fan)."""
    if fan <= 0:
        raise ValueError("cannot initialise a weight with zero fan")
    return np.sqrt(gain ** 2 * variance_profile(algebra) / fan)


def _check(weight: torch.Tensor, A: Algebra) -> None:
    if weight.shape[-1] != A.dim:
        raise ValueError(f"weight's last dimension must be the algebra dimension {A.dim} ({A.name}), "
                         f"got shape {tuple(weight.shape)}")


def _fill(weight: torch.Tensor, std: np.ndarray, distribution: str, generator=None) -> torch.Tensor:
    s = torch.as_tensor(std, dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        if distribution == "normal":
            weight.normal_(0.0, 1.0, generator=generator)
        elif distribution == "uniform":
            weight.uniform_(-math.sqrt(3.0), math.sqrt(3.0), generator=generator)
        else:
            raise ValueError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")
        weight.mul_(s)
    return weight


def _fan(weight: torch.Tensor, mode: str) -> float:
    fan_in, fan_out = algebra_fans(weight)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    if mode == "avg":
        return (fan_in + fan_out) / 2
    raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'avg', got {mode!r}")


def kaiming_normal_(weight: torch.Tensor, algebra, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "relu", generator: torch.Generator | None = None) -> torch.Tensor:
    """He initialisation (normal) for an algebra weight (out, in, *kernel, d)."""
    A = _alg(algebra)
    _check(weight, A)
    gain = nn.init.calculate_gain(nonlinearity, a)
    return _fill(weight, component_std(A, _fan(weight, mode), gain), "normal", generator)


def kaiming_uniform_(weight: torch.Tensor, algebra, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "relu", generator: torch.Generator | None = None) -> torch.Tensor:
    """He initialisation (uniform, same variance) for an algebra weight."""
    A = _alg(algebra)
    _check(weight, A)
    gain = nn.init.calculate_gain(nonlinearity, a)
    return _fill(weight, component_std(A, _fan(weight, mode), gain), "uniform", generator)


def xavier_normal_(weight: torch.Tensor, algebra, gain: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot initialisation (normal): variance gain^2 * p / ((fan_in + fan_out) / 2)."""
    A = _alg(algebra)
    _check(weight, A)
    return _fill(weight, component_std(A, _fan(weight, "avg"), gain), "normal", generator)


def xavier_uniform_(weight: torch.Tensor, algebra, gain: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot initialisation (uniform, same variance)."""
    A = _alg(algebra)
    _check(weight, A)
    return _fill(weight, component_std(A, _fan(weight, "avg"), gain), "uniform", generator)


def init_weight_(weight: torch.Tensor, algebra, scheme: str = "he", distribution: str = "normal",
                 nonlinearity: str = "relu", gain: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One entry point: scheme 'he' (fan_in, gain from `nonlinearity`) or 'glorot' (average fan).

    `gain` overrides the gain derived from `nonlinearity`.
    """
    A = _alg(algebra)
    _check(weight, A)
    if scheme in ("he", "kaiming"):
        g = nn.init.calculate_gain(nonlinearity) if gain is None else gain
        fan = _fan(weight, "fan_in")
    elif scheme in ("glorot", "xavier"):
        g = 1.0 if gain is None else gain
        fan = _fan(weight, "avg")
    else:
        raise ValueError(f"scheme must be 'he' or 'glorot', got {scheme!r}")
    return _fill(weight, component_std(A, fan, g), distribution, generator)


def is_algebra_layer(m: nn.Module) -> bool:
    """A layer whose `weight` (out, in, *kernel, d) multiplies algebra elements (AlgebraLinear, AlgebraConv*d
    and anything shaped like them with an `algebra` attribute); norms, whose affine weights may also end in
    d, are not."""
    alg = getattr(m, "algebra", None)
    w = getattr(m, "weight", None)
    if alg is None or not isinstance(w, torch.Tensor) or w.dim() < 3 or getattr(m, "_not_an_algebra_layer", False):
        return False
    try:
        A = _alg(alg)
    except Exception:
        return False
    return w.shape[-1] == A.dim


def algebra_layers(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    """(name, module) for every algebra layer (`is_algebra_layer`) in `model`, itself included."""
    for name, m in model.named_modules():
        if is_algebra_layer(m):
            yield name, m


def init_model_(model: nn.Module, scheme: str = "he", distribution: str = "normal", nonlinearity: str = "relu",
                gain: float | None = None, zero_bias: bool = True,
                generator: torch.Generator | None = None) -> nn.Module:
    """Initialise every algebra layer of `model` (weights by `init_weight_`, biases to zero)."""
    from torch.nn.utils import parametrize

    for _, m in algebra_layers(model):
        # a pruned layer's weight is computed from `original`: initialise that (the mask stays applied)
        w = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
        init_weight_(w, m.algebra, scheme, distribution, nonlinearity, gain, generator)
        b = getattr(m, "bias", None)
        if zero_bias and isinstance(b, torch.Tensor):
            with torch.no_grad():
                b.zero_()
    return model
