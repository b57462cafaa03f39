"""Learned algebras (parameterized hypercomplex multiplication, PHM): the structure tensor is a parameter.

    import runtime
    layer = AlgebraLinear(64, 64, algebra=runtime.learned(4))     # or algebra="PHM4"
    layer.algebra.structure_tensor()                       # the layer's own trainable T (4, 4, 4)

A layer over a learned algebra computes y_o = sum_i w_oi * x_i with (w * x)_k = sum_aj T[a, j, k] w_a x_j as any
algebra layer does, but T (d, d, d) is an `nn.Parameter` of the layer (its `algebra` submodule, state_dict key
`algebra.T`), trained with the weight: the layer's real weight is sum_a A_a (x) W_a with A_a = T[a]^T,
PHM's form.  Each layer built from a `LearnedSpec` (`learned(d)` or a name "PHM<d>") gets its own structure; pass
one `LearnedAlgebra` module to several layers to share it.

Initialisation (PHM): each A_a Xavier-uniform (bound sqrt(3/d)), then the weight variance-preserving for the
structure drawn (runtime.layers.linear.default_init_, or runtime.init's schemes, which read the current T).
`freeze()` stops training T; `spec_source(name)` writes it as an algebra spec (exact rationals) for the normal
build, which gives a fixed algebra with its own scheme search and kernels.

Layers that need no products (norms, pools, dropout, activations) hold the `LearnedSpec` (name, dim); the
product layers (linear, conv, transposed conv, recurrent, attention projections) hold a `LearnedAlgebra`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from .registry import Algebra, available_algebras, load_algebra

__all__ = ["LearnedSpec", "LearnedAlgebra", "learned", "learned_spec", "describe", "is_learned", "MAX_DIM",
           "Nearest", "change_basis", "nearest_known"]

#: the largest learned dimension (T has d^3 entries; the products cost d^2 per element pair)
MAX_DIM = 16

_NAME = re.compile(r"PHM([0-9]+)")


class _Described:
    """What a learned algebra says about itself wherever an Algebra's description is read (needs `dim`)."""

    learned = True
    unit = None

    @property
    def properties(self) -> dict:
        return {}

    @property
    def naive_multiplications(self) -> int:
        """Products per element pair of a dense structure tensor: d^3."""
        return self.dim ** 3


@dataclass(frozen=True)
class LearnedSpec(_Described):
    """A learned algebra of dimension `dim` before any layer owns its structure: what `learned(d)` returns and
    what a name "PHM<d>" means.  Quacks like an Algebra for the layers that only need the dimension."""

    dim: int

    @property
    def name(self) -> str:
        return f"PHM{self.dim}"

    def __repr__(self) -> str:
        return f"learned({self.dim})"


def learned(d: int) -> LearnedSpec:
    """A learned algebra of dimension d (2 <= d <= MAX_DIM) to pass as `algebra=` to any layer or model."""
    if not isinstance(d, int) or isinstance(d, bool) or not 2 <= d <= MAX_DIM:
        raise ValueError(f"learned(d): d must be an int from 2 to {MAX_DIM}, got {d!r}")
    return LearnedSpec(d)


def learned_spec(name: str) -> LearnedSpec | None:
    """The LearnedSpec a name "PHM<d>" stands for, or None for any other name."""
    m = _NAME.fullmatch(name)
    return learned(int(m.group(1))) if m else None


class LearnedAlgebra(_Described, nn.Module):
    """A layer's trainable structure tensor: parameter `T` (d, d, d), (x*y)_k = sum_ij T[i,j,k] x_i y_j.

    Read by the algebra layers through `structure_tensor()` (live, differentiable).
    `structure` (numpy float64, a copy of the current values) and `dim`, `name`, `unit`, `properties`,
    `naive_multiplications` make it usable where an Algebra's description is read (counting, runtime.init).
    """

    def __init__(self, spec: LearnedSpec | int, device=None, dtype=None) -> None:
        super().__init__()
        spec = learned(spec) if isinstance(spec, int) else spec
        self.spec = spec
        self.dim = spec.dim
        self.name = spec.name
        self.T = nn.Parameter(torch.empty(spec.dim, spec.dim, spec.dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PHM's initialisation: each A_a = T[a]^T Xavier-uniform, bound sqrt(6 / (d + d))."""
        bound = math.sqrt(3.0 / self.dim)
        with torch.no_grad():
            self.T.uniform_(-bound, bound, generator=generator)

    @property
    def structure(self) -> np.ndarray:
        """The current structure tensor as float64 numpy (d, d, d), a copy."""
        return self.T.detach().to("cpu", torch.float64).numpy().copy()

    def structure_tensor(self, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
        """T (d, d, d), differentiable, in `dtype` / on `device` when given."""
        return self.T.to(dtype=dtype, device=device)

    def mul(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(..., d) x (..., d) -> (..., d) with the current structure."""
        return torch.einsum("ijk,...i,...j->...k", self.structure_tensor(x.dtype, x.device), x, y)

    def freeze(self) -> "LearnedAlgebra":
        """Stop training the structure (requires_grad False); returns self."""
        self.T.requires_grad_(False)
        return self

    def spec_source(self, name: str, max_denominator: int = 1 << 12) -> str:
        """An algebra spec file (algebra_spec style) defining the current structure as a fixed algebra named
        `name`, each constant rounded to the nearest fraction with denominator <= max_denominator.  Build it
        with `python -m codegen build --spec-dir FOLDER` and load it with runtime.load_algebra(name)."""
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ValueError(f"{self.name}.spec_source: name must be an identifier (letters, digits, _), got {name!r}")
        basis = [f"e{i}" for i in range(self.dim)]
        T = self.structure
        products = {}
        for i in range(self.dim):
            for j in range(self.dim):
                terms = []
                for k in range(self.dim):
                    c = Fraction(float(T[i, j, k])).limit_denominator(max_denominator)
                    if c:
                        terms.append(f"({c})*{basis[k]}")
                products[f"{basis[i]}*{basis[j]}"] = " + ".join(terms) if terms else "0"
        lines = [f'"""{name}: a learned {self.dim}-dimensional structure, frozen (constants rounded to '
                 f'denominators <= {max_denominator})."""',
                 "from codegen.spec import algebra", "",
                 f"{name} = algebra({name!r}, basis={basis!r}, missing=\"zero\", title=\"frozen learned algebra\",",
                 "    products={"]
        lines += [f"        {k!r}: {v!r}," for k, v in products.items()]
        lines += ["    })", ""]
        return "\n".join(lines)

    def extra_repr(self) -> str:
        return f"{self.name}, trainable={self.T.requires_grad}"


def is_learned(algebra) -> bool:
    """Whether `algebra` is a learned algebra (a LearnedSpec or a LearnedAlgebra)."""
    return getattr(algebra, "learned", False) is True


def describe(algebra):
    """What a layer reads about an algebra it does not multiply with: the Algebra for a built one (name or
    object), the LearnedSpec / LearnedAlgebra for a learned one ("PHM<d>", learned(d), a layer's module)."""
    if isinstance(algebra, (Algebra, LearnedSpec, LearnedAlgebra)):
        return algebra
    if isinstance(algebra, str):
        spec = learned_spec(algebra)
        if spec is not None:
            return spec
    return load_algebra(algebra)


@dataclass(frozen=True)
class Nearest:
    """A built algebra's nearest copy to a learned structure: `name`, the relative distance
    ||T - T_near|| / ||T|| and `structure` T_near (d, d, d) float64, the built algebra written in the basis that
    brings it closest to T (so T_near is isomorphic to the built algebra, exactly up to rounding)."""

    name: str
    distance: float
    structure: torch.Tensor


def change_basis(T: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """T (d, d, d) in the basis e'_i = sum_a P[i, a] e_a: T'[i,j,k] = sum_abc P[i,a] P[j,b] T[a,b,c] P^-1[c,k].
    P (..., d, d) -> (..., d, d, d)."""
    return torch.einsum("...ia,...jb,abc,...ck->...ijk", P, P, T, torch.linalg.inv(P))


def nearest_known(T: torch.Tensor, names=None, restarts: int = 16, steps: int = 400, seed: int = 0) -> list[Nearest]:
    """How close a learned structure T (d, d, d) is to each built algebra of its dimension, up to a change of basis
    (the orbit of the built algebra under GL(d), where isomorphic algebras lie): per algebra the basis P
    minimising ||B in basis P - T|| / ||T|| (B the built algebra's structure), found by Adam from the identity and
    random starts, all at once (a local search: a distance it reports is reached, a smaller one may exist).
    names: the built algebras to try (default: every available one of dimension d).  Returns the candidates,
    nearest first."""
    T = T.detach().to("cpu", torch.float64)
    d = T.shape[0]
    if names is None:
        names = [n for n in available_algebras() if load_algebra(n).dim == d]
    g = torch.Generator().manual_seed(seed)
    norm = T.norm()
    out = []
    for name in names:
        B = torch.as_tensor(load_algebra(name).structure, dtype=torch.float64)
        if B.shape != T.shape:
            raise ValueError(f"nearest_known: {name} has dimension {B.shape[0]}, the learned structure {d}")
        P = torch.randn(restarts, d, d, generator=g, dtype=torch.float64)
        P[0] = torch.eye(d, dtype=torch.float64)
        P.requires_grad_()
        opt = torch.optim.Adam([P], lr=0.05)
        for _ in range(steps):
            dist = (change_basis(B, P) - T).flatten(1).norm(dim=1) / norm
            opt.zero_grad()
            dist.sum().backward()              # the starts are independent: one backward for all
            opt.step()
        with torch.no_grad():
            near = change_basis(B, P)
            dist = (near - T).flatten(1).norm(dim=1) / norm
            dist = torch.where(torch.isfinite(dist), dist, torch.inf)
            best = int(dist.argmin())
        out.append(Nearest(name, float(dist[best]), near[best]))
    return sorted(out, key=lambda n: n.distance)
