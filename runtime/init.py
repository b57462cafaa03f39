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

Polar initialisation (`polar_`, or distribution="polar" in `init_weight_` / `init_model_`) draws
w = rho (cos(theta) e + sin(theta) u): modulus rho = sigma * chi_d (the Euclidean norm of d Gaussian
components of std sigma), phase theta ~ U(-pi, pi), e the unit direction of the algebra's unit element, u a
uniformly random unit vector orthogonal to e.  For C this is Trabelsi et al.'s complex init (Rayleigh
modulus, uniform phase: an isotropic complex Gaussian, Var(W) = E|W|^2 = 2 sigma^2); for H it is
Parcollet et al.'s / Gaudet and Maida's quaternion init (chi modulus with 4 degrees of freedom, random unit
pure-quaternion axis u, uniform phase; Var(W) = 4 sigma^2, per component 2 sigma^2 for the real part and
2 sigma^2 / 3 for each imaginary part).  sigma solves the same criterion as He / Glorot: fan * Var(y_k) =
gain^2 * Var(x) for every fed output component, which gives the papers' values (C: sigma = 1 / sqrt(fan_in)
for He, 1 / sqrt(fan_in + fan_out) for Glorot; H: sigma = 1 / sqrt(2 fan_in) and 1 / sqrt(2 (fan_in +
fan_out))).  For any other algebra with a unit, |w| is the Euclidean norm of the components (the algebra's
norm for composition algebras: C, H, octonions) and the same formula applies where the polar covariance
feeds every output component equally (matrix algebras, Clifford algebras); elsewhere (dual numbers, whose
eps component must start at zero) and for algebras without a unit it is refused.

He (`kaiming_*`) uses fan = fan_in and gain^2 = 2 for ReLU (split ReLU halves each component's second
moment); Glorot (`xavier_*`) uses fan = (fan_in + fan_out) / 2.  Fans count algebra elements:
weight shape (out, in // groups, *kernel, d) gives fan_in = in // groups * prod(kernel) and
fan_out = out * prod(kernel), as in torch.nn.init.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable

import numpy as np
import torch
from torch import nn

from .learned_algebra import describe
from .registry import Algebra

__all__ = [
    "structure_second_moments", "variance_profile", "algebra_fans", "component_std",
    "kaiming_normal_", "kaiming_uniform_", "xavier_normal_", "xavier_uniform_",
    "init_weight_", "init_model_", "algebra_layers", "is_algebra_layer", "polar_", "polar_sigma",
]


def _alg(algebra) -> Algebra:
    return describe(algebra)


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

    Multiply by gain^2 / fan to get the variances.  Cached per built algebra (a learned one is read afresh).
    """
    A = _alg(algebra)
    cache = getattr(A, "cache", None)          # a learned algebra's T changes: never cached
    if cache is not None and cache.variance_profile is not None:
        return cache.variance_profile
    S = structure_second_moments(A)
    fed = S.sum(axis=0) > 0                      # output components some constant feeds
    M = S[:, fed].T                              # (n_fed, d): rows are the equations
    b = np.ones(M.shape[0])
    p = np.linalg.pinv(M) @ b                    # minimum-norm solution
    if not (np.allclose(M @ p, b, atol=1e-9) and (p >= -1e-12).all()):
        p = _nnls(M, b)
    p = np.clip(p, 0.0, None)
    p[np.abs(p) < 1e-12] = 0.0
    kept = M @ p
    if cache is not None and not np.allclose(kept, b, atol=1e-6):      # a built algebra: said once, then cached
        warnings.warn(f"runtime.init: no non-negative weight-component variances keep every output component's "
                      f"variance for {A.name}; the least-squares fit keeps {kept.min():.2f} to {kept.max():.2f} of "
                      f"it per component (a norm after such layers restores it)", RuntimeWarning, stacklevel=3)
    if cache is not None:
        cache.variance_profile = p
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


def _polar_direction_cov(A: Algebra) -> tuple[np.ndarray, np.ndarray]:
    """(e, D): the unit direction e (d,) and the covariance D (d, d) of cos(theta) e + sin(theta) u."""
    if A.unit is None:
        raise ValueError(f"polar initialisation needs an algebra with a unit (the phase axis); {A.name} has none: "
                         f"use kaiming_normal_ / xavier_normal_")
    d = A.dim
    e = np.asarray(A.unit, dtype=np.float64)
    e = e / np.linalg.norm(e)
    if d == 1:
        return e, np.ones((1, 1))
    P = np.outer(e, e)
    return e, 0.5 * P + 0.5 / (d - 1) * (np.eye(d) - P)


def polar_sigma(algebra, fan: float, gain: float = 1.0) -> float:
    """sigma of the polar initialisation (see the module docstring): fan * Var(y_k) = gain^2 for every fed
    output component k (unit-variance inputs); refused where the polar covariance feeds them unequally."""
    A = _alg(algebra)
    if fan <= 0:
        raise ValueError("cannot initialise a weight with zero fan")
    _, D = _polar_direction_cov(A)
    T = A.structure
    v = A.dim * np.einsum("ijk,ljk,il->k", T, T, D)         # Var(y_k) per unit sigma^2 and input variance
    fed = structure_second_moments(A).sum(axis=0) > 0
    if not np.allclose(v[fed], v[fed][0], rtol=1e-9):
        raise ValueError(f"polar initialisation of {A.name} feeds its output components unequally "
                         f"(variances {np.round(v[fed], 4).tolist()} per sigma^2): use kaiming_normal_ / "
                         f"xavier_normal_, whose per-component profile keeps every component's variance")
    return math.sqrt(gain ** 2 / (fan * v[fed][0]))


def polar_(weight: torch.Tensor, algebra, scheme: str = "he", nonlinearity: str = "relu",
           gain: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Polar initialisation of an algebra weight (out, in, *kernel, d): w = rho (cos theta e + sin theta u),
    rho = sigma chi_d, theta ~ U(-pi, pi), u a random unit vector orthogonal to the unit direction e;
    sigma from `polar_sigma` with He (scheme 'he', fan_in) or Glorot ('glorot', average fan) fans and gains."""
    A = _alg(algebra)
    _check(weight, A)
    if scheme in ("he", "kaiming"):
        g, fan = (nn.init.calculate_gain(nonlinearity) if gain is None else gain), _fan(weight, "fan_in")
    elif scheme in ("glorot", "xavier"):
        g, fan = (1.0 if gain is None else gain), _fan(weight, "avg")
    else:
        raise ValueError(f"scheme must be 'he' or 'glorot', got {scheme!r}")
    sigma = polar_sigma(A, fan, g)
    e_np, _ = _polar_direction_cov(A)
    kw = {"dtype": torch.float64, "device": weight.device}
    shape = weight.shape[:-1]
    with torch.no_grad():
        e = torch.as_tensor(e_np, **kw)
        rho = sigma * torch.randn(*shape, A.dim, generator=generator, **kw).norm(dim=-1, keepdim=True)
        if A.dim == 1:
            direction = torch.randint(0, 2, (*shape, 1), generator=generator, device=weight.device) * 2.0 - 1.0
            w = rho * direction.to(torch.float64) * e
        else:
            theta = (torch.rand(*shape, 1, generator=generator, **kw) * 2 - 1) * math.pi
            u = torch.randn(*shape, A.dim, generator=generator, **kw)
            u = u - (u @ e)[..., None] * e
            u = u / u.norm(dim=-1, keepdim=True)
            w = rho * (torch.cos(theta) * e + torch.sin(theta) * u)
        weight.copy_(w.to(weight.dtype))
    return weight


def init_weight_(weight: torch.Tensor, algebra, scheme: str = "he", distribution: str = "normal",
                 nonlinearity: str = "relu", gain: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One entry point: scheme 'he' (fan_in, gain from `nonlinearity`) or 'glorot' (average fan);
    distribution 'normal', 'uniform' (per-component profile) or 'polar' (`polar_`).

    `gain` overrides the gain derived from `nonlinearity`.
    """
    A = _alg(algebra)
    _check(weight, A)
    if distribution == "polar":
        return polar_(weight, A, scheme, nonlinearity, gain, generator)
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
