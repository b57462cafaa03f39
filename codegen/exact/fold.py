"""The fold plan of a weight-left layer, found from the exact structure tensor at build time.

For a weight-left layer `y = w * x` only the left-regular representation L(w)[k, j] = sum_i T[i, j, k] w_i
matters.  If some permutation `perm` of the basis makes every L(w) block-diagonal with m identical p x p
blocks B(w) (p = d / m), then

    (w * x)[perm[c*p + t]] = sum_s B(w)[t, s] x[perm[c*p + s]]          for every block c < m,

so the m blocks of each activation element can be folded into the batch and the whole layer becomes ONE real
GEMM / conv with a (out*p) x (in*p) weight: p^2 = d^2/m MACs per element pair instead of d^2.  For M_n(R) in
the row-major basis the blocks are the n columns of the activation matrix (m = n, p = n, n^3 MACs); for
M_2(C) they are its two complex columns (m = 2, p = 4).  Nothing here looks at algebra names.

Detection:
1. Connected components of the graph with an edge j - k whenever some T[i, j, k] != 0 (j and k are
   coupled by left multiplication).  These are the finest blocks any permutation can give.
2. All components must have the same size p, and for every component c there must be a bijection sigma_c
   from component 0 with T[:, sigma_c(s), sigma_c(t)] == T[:, s, t] for all s, t (identical blocks); found
   by backtracking with pruning (p is at most a few dozen).
If either fails, the permutation plan has m = 1 (one block: the block-matrix path).

3. Through a basis change: an algebra A = M_n(Q) (x) D in a basis that no permutation folds (Cl(2,0), the
   split-quaternions, a hand-typed M2 table; `codegen.exact.simple.simple_decomposition`) is folded in the basis
   E_ab c_t, where it folds by permutation with m = n.  The plan then carries the exact d x d matrices F = P^-1
   (rows in fold order) applied to each activation element before folding and G = P (columns in fold order)
   applied to each output element after unfolding; the weight side needs nothing at run time, since the change is
   composed into the block: block[a, t, s] = sum_b P^-1[b, a] block'[b, t, s].

The permutation is also matched to a strided view when possible (the basis viewed as a small
multi-dimensional array whose axes are reordered), so that folding costs one permute-copy rather than a
gather.  The build stores the plan in the manifest (`emit.build`); the runtime only reads it.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..contract.manifest import FoldPlan
from .simple import simple_decomposition
from .tensors import change_basis, is_associative, unit

__all__ = ["FoldPlan", "fold_plan"]


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a == b))


def _components(T: np.ndarray) -> list[list[int]]:
    d = T.shape[0]
    coupled = np.any(T != 0, axis=0).astype(bool)            # (j, k)
    coupled = coupled | coupled.T
    seen = [False] * d
    comps = []
    for start in range(d):
        if seen[start]:
            continue
        stack, comp = [start], []
        seen[start] = True
        while stack:
            j = stack.pop()
            comp.append(j)
            for k in np.nonzero(coupled[j])[0]:
                if not seen[k]:
                    seen[k] = True
                    stack.append(int(k))
        comps.append(sorted(comp))
    comps.sort(key=lambda c: c[0])
    return comps


def _match(T: np.ndarray, base: list[int], other: list[int]) -> list[int] | None:
    """A bijection sigma: base -> other (as a list aligned with base) preserving T[:, s, t], or None."""
    p = len(base)
    sigma: list[int] = []
    used = [False] * p

    def consistent(pos: int, cand: int) -> bool:
        s = base[pos]
        if not _equal(T[:, s, s], T[:, cand, cand]):
            return False
        for q in range(pos):
            a, b = base[q], sigma[q]
            if not (_equal(T[:, s, a], T[:, cand, b]) and _equal(T[:, a, s], T[:, b, cand])):
                return False
        return True

    def search(pos: int) -> bool:
        if pos == p:
            return True
        for idx in range(p):
            if used[idx]:
                continue
            cand = other[idx]
            if consistent(pos, cand):
                used[idx] = True
                sigma.append(cand)
                if search(pos + 1):
                    return True
                sigma.pop()
                used[idx] = False
        return False

    return list(sigma) if search(0) else None


def _factorisations(d: int, max_len: int = 4):
    """Ordered factorisations of d into factors > 1 (at most max_len of them)."""
    out = []

    def rec(rest, prefix):
        if rest == 1 and prefix:
            out.append(tuple(prefix))
            return
        if len(prefix) == max_len:
            return
        for f in range(2, rest + 1):
            if rest % f == 0:
                rec(rest // f, prefix + [f])

    rec(d, [])
    return sorted(out, key=len)


def _strided_view(perm: np.ndarray, m: int):
    d = len(perm)
    base = np.arange(d)
    for shape in _factorisations(d):
        arr = base.reshape(shape)
        for axes in itertools.permutations(range(len(shape))):
            if not _equal(arr.transpose(axes).ravel(), perm):
                continue
            sizes = [shape[a] for a in axes]
            for split in range(1, len(shape)):
                if math.prod(sizes[:split]) == m:
                    return tuple(shape), tuple(axes), split
    return None


def fold_plan(T: np.ndarray) -> FoldPlan:
    """The fold plan of an exact structure tensor T (d, d, d) with (x*y)_k = sum_ij T[i,j,k] x_i y_j: by a
    permutation when one folds, else through the basis change of a matrix factor when A has one."""
    plan = _permutation_plan(T)
    if plan.m > 1 or T.shape[0] < 4 or unit(T) is None or not is_associative(T):
        return plan
    dec = simple_decomposition(T)
    if dec is None:
        return plan
    inner = _permutation_plan(change_basis(T, dec.P, dec.Pinv))
    if inner.m == 1:
        return plan
    order = list(inner.perm)
    F = np.ascontiguousarray(dec.Pinv[order, :])
    G = np.ascontiguousarray(dec.P[:, order])
    block = np.einsum("ba,bts->ats", dec.Pinv, inner.block)
    d = T.shape[0]
    return FoldPlan(inner.m, inner.p, tuple(range(d)), block, (inner.m, inner.p), (0, 1), 1, F, G)


def _permutation_plan(T: np.ndarray) -> FoldPlan:
    d = T.shape[0]
    ident = FoldPlan.identity(T)
    comps = _components(T)
    m = len(comps)
    if m == 1 or any(len(c) != len(comps[0]) for c in comps):
        return ident
    base = comps[0]
    order = [list(base)]
    for other in comps[1:]:
        sigma = _match(T, base, other)
        if sigma is None:
            return ident
        order.append(sigma)
    perm = np.array([i for block in order for i in block])
    p = d // m
    block = np.ascontiguousarray(T[:, base][:, :, base].transpose(0, 2, 1))   # block[a, t, s] = T[a, s, t]
    sv = _strided_view(perm, m)
    if sv is None:
        return FoldPlan(m, p, tuple(int(i) for i in perm), block, None, None, None)
    return FoldPlan(m, p, tuple(int(i) for i in perm), block, *sv)
