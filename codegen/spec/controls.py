"""`random_structure`: a seeded random structure tensor with +-1 constants, the control for experiments.

    from codegen.spec import random_structure
    RandH = random_structure(4, 16, seed=1, name="RandH")

A layer over a random structure couples the components of each element by a fixed bilinear map with the same
number of nonzero constants as the algebra it stands in for, but with none of that algebra's laws.  Comparing
the two tells "some fixed coupling of the components" apart from "this particular algebra".  Such an algebra is
a control, not one anyone should use for its own sake.

How it is drawn (everything from one `random.Random(seed)`, integers only, so the same seed gives the same
tensor on every Python version and machine, and the build stays byte-identical):

1. the positions: `nonzeros` distinct cells of the d^3 cells of T[i, j, k], uniformly (a partial Fisher-Yates
   shuffle of the cell indices, by `randrange`);
2. the signs: each constant is +1 or -1 with probability 1/2 (`randrange(2)`);
3. the test: an integer element w with entries uniform in [-2^20, 2^20], drawn next; the draw is kept only if
   the left and right multiplication matrices L(w) and R(w) (`codegen.exact.left_regular` / `right_regular`)
   have full rank, computed exactly over Q.  det L(w) is a polynomial in w, so full rank at one w proves that
   L is nonsingular for almost every w (a generic element): the product neither loses a direction of the
   weight nor of the activation.  Otherwise (a rank-deficient draw, or, with negligible probability, a
   nonsingular one whose test point hit a root of the determinant) the next draw is taken from the same
   generator, up to `MAX_DRAWS` draws.
"""
from __future__ import annotations

import random
from fractions import Fraction
from typing import Mapping

import numpy as np

from .. import exact
from .algebra import AlgebraSpec
from .constructors import derived
from .errors import SpecError

__all__ = ["random_structure", "MAX_DRAWS", "TEST_POINT_BOUND"]

MAX_DRAWS = 1000
TEST_POINT_BOUND = 2 ** 20


def _draw(rng: random.Random, d: int, nonzeros: int) -> np.ndarray:
    """One draw: `nonzeros` distinct cells of the (d, d, d) tensor, uniformly, each +1 or -1."""
    cells = list(range(d ** 3))
    for t in range(nonzeros):                                   # partial Fisher-Yates: cells[:nonzeros]
        s = t + rng.randrange(d ** 3 - t)
        cells[t], cells[s] = cells[s], cells[t]
    T = exact.zeros(d, d, d)
    for c in sorted(cells[:nonzeros]):
        T[c // (d * d), (c // d) % d, c % d] = Fraction(1 if rng.randrange(2) else -1)
    return T


def _generic_multiplications_nonsingular(rng: random.Random, T: np.ndarray) -> bool:
    """L(w) and R(w) of one random integer w both of full rank (exactly): then so are a generic element's."""
    d = T.shape[0]
    w = [Fraction(rng.randrange(-TEST_POINT_BOUND, TEST_POINT_BOUND + 1)) for _ in range(d)]
    return exact.rank(exact.left_regular(T, w)) == d and exact.rank(exact.right_regular(T, w)) == d


def random_structure(dim: int, nonzeros: int, *, seed: int, name: str, claims: Mapping[str, bool] | None = None,
                     title: str = "") -> AlgebraSpec:
    """A random algebra of dimension `dim` whose structure tensor has exactly `nonzeros` constants, each +-1,
    at uniformly drawn cells, kept only if a generic element's L(w) and R(w) are nonsingular (module docstring).
    Basis e1, ..., e<dim>.  Deterministic in (dim, nonzeros, seed); no derivation (the build's structural route
    and the naive scheme, rank <= nonzeros, apply)."""
    for what, v, low in (("dim", dim, 1), ("nonzeros", nonzeros, 0), ("seed", seed, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise SpecError(f"random_structure: {what} must be an integer >= {low}, got {v!r}", algebra=name)
    if not dim <= nonzeros <= dim ** 3:
        raise SpecError(f"random_structure: nonzeros must lie in [{dim}, {dim ** 3}] (fewer than {dim} cannot give "
                        f"a nonsingular L(w)), got {nonzeros}", algebra=name)
    rng = random.Random(seed)
    for _ in range(MAX_DRAWS):
        T = _draw(rng, dim, nonzeros)
        if _generic_multiplications_nonsingular(rng, T):
            return derived(name, [f"e{i + 1}" for i in range(dim)], T, derivation=None, claims=claims,
                           title=title or f"random structure, dim {dim}, {nonzeros} constants +-1, seed {seed}")
    raise SpecError(f"random_structure: no draw of {nonzeros} constants in dimension {dim} had nonsingular L(w) and "
                    f"R(w) in {MAX_DRAWS} draws (seed {seed}); give more nonzeros", algebra=name)
