"""Proven lower bounds on the rank of a structure tensor over Q, used by the search to stop early."""
from __future__ import annotations

import numpy as np

from ..exact import is_associative, rank, unit
from ..exact.wedderburn import radical_dimension

__all__ = ["lower_bound"]


def lower_bound(T: np.ndarray, *, simple: bool | None = None) -> int:
    """A proven lower bound on the rank of T over Q.

    * the ranks of the three flattenings (always valid);
    * Alder-Strassen, for associative algebras with a unit: R >= 2d - t, t = number of maximal two-sided
      ideals = number of simple components of A/rad A.  t <= dim(A/rad A) always; t = 1 when A is
      semisimple with no central idempotent split (``simple=True``, passed by the caller that has proven
      the centre's idempotent primitive), and t = 1 when A/rad A is one-dimensional.
    """
    d = T.shape[0]
    flat = [rank(np.moveaxis(T, ax, 0).reshape(d, d * d)) for ax in range(3)]
    lb = max(flat) if d else 0
    if d and unit(T) is not None and is_associative(T):
        rad = radical_dimension(T)
        q = d - rad
        t = 1 if q <= 1 or (rad == 0 and simple) else q
        lb = max(lb, 2 * d - t)
    return lb
