"""Alternating least squares (ALS) with rounding: an exact rank-r scheme for T, or None.

The fallback of the scheme search where flip-graph walks stall (Smirnov 2013; docs/schemes.md):

1. **ALS** with a Tikhonov term that decays geometrically (lambda_t = lambda_0 * decay^t) and per-term
   norm balancing, from seeded random starts; many restarts within the time budget.
2. **Levenberg-Marquardt polish** of the converged point to machine precision.
3. **Rounding.**  Fix the scaling gauge (the largest entry of every u_s and v_s becomes 1), then snap the
   U and V coordinates to nearby simple rationals p/q (|p/q| <= max_abs, q in ``denominators``): every
   coordinate already within 1e-7 of one in a batch, otherwise the nearest one alone, re-fitting all
   free coordinates with LM after each snap (a snap that the re-fit cannot absorb is undone and the
   next candidate is tried).
4. **Exact W.**  With U and V rational, W solves a linear system over Q exactly (Fraction elimination);
   the scheme is then verified exactly.  Nothing unverified is returned.

Deterministic for a given seed: restart k uses ``numpy.random.default_rng([seed, k])``; the time budget
only decides how many restarts run.
"""
from __future__ import annotations

import time
from fractions import Fraction
from typing import Callable

import numpy as np

from ..exact import fraction_array, rref
from ..schemes import Scheme

__all__ = ["als_search", "als_fit", "round_scheme"]

Progress = Callable[[int, float, str], None]


# --------------------------------------------------------------------------------------------------
# numerics
# --------------------------------------------------------------------------------------------------
def _cp(U, V, W):
    return np.einsum("si,sj,sk->ijk", U, V, W)


def _balance(U, V, W):
    nu = np.linalg.norm(U, axis=1) + 1e-300
    nv = np.linalg.norm(V, axis=1) + 1e-300
    nw = np.linalg.norm(W, axis=1) + 1e-300
    g = np.cbrt(nu * nv * nw)
    return U * (g / nu)[:, None], V * (g / nv)[:, None], W * (g / nw)[:, None]


def als_fit(Tf: np.ndarray, r: int, rng: np.random.Generator, *, iters: int = 1500,
            lam0: float = 1e-2, decay: float = 0.99, lam_min: float = 1e-11,
            polish_below: float = 0.05, deadline: float = float("inf")):
    """Regularised ALS from a random start, then a Levenberg-Marquardt polish when the relative
    residual is below ``polish_below``.  Returns (U, V, W, relative residual)."""
    d = Tf.shape[0]
    nrm = np.linalg.norm(Tf) or 1.0
    scale = (nrm / max(r, 1)) ** (1 / 3) / np.sqrt(d)
    U, V, W = (rng.standard_normal((r, d)) * scale for _ in range(3))
    I = np.eye(r)
    lam = lam0 * nrm
    best = np.inf
    last_check = np.inf
    for it in range(iters):
        G = (V @ V.T) * (W @ W.T)
        U = np.linalg.solve(G + lam * I, np.einsum("ijk,sj,sk->si", Tf, V, W))
        G = (U @ U.T) * (W @ W.T)
        V = np.linalg.solve(G + lam * I, np.einsum("ijk,si,sk->sj", Tf, U, W))
        G = (U @ U.T) * (V @ V.T)
        W = np.linalg.solve(G + lam * I, np.einsum("ijk,si,sj->sk", Tf, U, V))
        U, V, W = _balance(U, V, W)
        lam = max(lam * decay, lam_min * nrm)
        if it % 25 == 24:
            res = np.linalg.norm(_cp(U, V, W) - Tf) / nrm
            best = min(best, res)
            if res < 1e-9:
                break
            if it % 200 == 199:
                if res > 0.995 * last_check and res > 1e-4 and lam <= 1e-6 * nrm:
                    break  # stalled (swamp or border-rank trap)
                last_check = res
            if time.monotonic() > deadline:
                break
            if not np.all(np.isfinite(U)) or np.abs(U).max() > 1e8:
                break
    res = np.linalg.norm(_cp(U, V, W) - Tf) / nrm
    if 1e-12 < res < polish_below and np.all(np.isfinite(U)):
        X, cost = _lm(Tf, np.stack([U, V, W]), np.ones((3, r, d), dtype=bool), iters=200,
                      deadline=deadline)
        if np.sqrt(cost) / nrm < res:
            U, V, W = X
            res = np.sqrt(cost) / nrm
    return U, V, W, res


def _jacobian(U, V, W):
    r, d = U.shape
    I = np.eye(d)
    JU = np.einsum("ia,sj,sk->ijksa", I, V, W).reshape(d ** 3, r * d)
    JV = np.einsum("ja,si,sk->ijksa", I, U, W).reshape(d ** 3, r * d)
    JW = np.einsum("ka,si,sj->ijksa", I, U, V).reshape(d ** 3, r * d)
    return np.concatenate([JU, JV, JW], axis=1)


def _lm(Tf, X, free, *, iters=60, tol=1e-26, deadline=float("inf")):
    """Levenberg-Marquardt on the coordinates X[free] (X: (3, r, d)); returns (X, squared residual)."""
    X = X.copy()
    t = Tf.reshape(-1)
    idx = np.flatnonzero(free.reshape(-1))

    def resid(Y):
        return _cp(*Y).reshape(-1) - t

    res = resid(X)
    cost = float(res @ res)
    mu = 1e-3
    if idx.size == 0:
        return X, cost
    for _ in range(iters):
        if cost < tol or time.monotonic() > deadline:
            break
        J = _jacobian(*X)[:, idx]
        g = J.T @ res
        H = J.T @ J
        accepted = False
        while mu < 1e10:
            try:
                step = np.linalg.solve(H + mu * np.eye(idx.size), -g)
            except np.linalg.LinAlgError:
                mu *= 10
                continue
            Y = X.copy()
            Y.reshape(-1)[idx] += step
            rn = resid(Y)
            cn = float(rn @ rn)
            if cn < cost:
                X, res, cost = Y, rn, cn
                mu = max(mu / 5, 1e-15)
                accepted = True
                break
            mu *= 5
        if not accepted:
            break
    return X, cost


# --------------------------------------------------------------------------------------------------
# rounding
# --------------------------------------------------------------------------------------------------
def _nice_values(denominators, max_abs) -> np.ndarray:
    vals = {Fraction(0)}
    for q in denominators:
        for p in range(-max_abs * q, max_abs * q + 1):
            vals.add(Fraction(p, q))
    vals = sorted(vals, key=lambda f: (f.denominator, abs(f.numerator), f < 0))
    return vals


def _exact_W(T: np.ndarray, Uq: np.ndarray, Vq: np.ndarray):
    """Solve sum_s U[s,i] V[s,j] W[s,k] = T[i,j,k] for W over Q; None if inconsistent."""
    r, d = Uq.shape
    rows = []
    for i in range(d):
        for j in range(d):
            coeffs = [Uq[s, i] * Vq[s, j] for s in range(r)]
            rows.append(coeffs + [T[i, j, k] for k in range(d)])
    R, piv = rref(rows, r + d)
    if any(p >= r for p in piv):
        return None
    W = [[Fraction(0)] * d for _ in range(r)]
    for row, p in zip(R, piv):
        for k in range(d):
            W[p][k] = row[r + k]
    return fraction_array(W)


def round_scheme(T, U, V, W, *, denominators=(1, 2, 3, 4), max_abs=4, max_backtrack=6,
                 max_refits=400, penalty=0.5, deadline=float("inf")):
    """Snap a numerically exact float CP decomposition to an exact rational scheme, or None."""
    T = fraction_array(T)
    Tf = T.astype(float)
    nrm2 = float((Tf ** 2).sum()) or 1.0
    tol = 1e-24 * nrm2
    U, V, W = (np.array(M, dtype=float) for M in (U, V, W))
    # drop numerically vanishing terms (the fit may use fewer terms than asked for)
    keep = (np.linalg.norm(U, axis=1) * np.linalg.norm(V, axis=1) * np.linalg.norm(W, axis=1)
            > 1e-10 * np.sqrt(nrm2))
    U, V, W = U[keep], V[keep], W[keep]
    if U.shape[0] == 0:
        return None
    # scaling gauge: the largest |entry| of u_s and v_s becomes +1
    for s in range(U.shape[0]):
        a = U[s, np.argmax(np.abs(U[s]))]
        b = V[s, np.argmax(np.abs(V[s]))]
        if a == 0 or b == 0:
            return None
        U[s] /= a
        V[s] /= b
        W[s] *= a * b
    X = np.stack([U, V, W])
    free = np.ones(X.shape, dtype=bool)
    X, cost = _lm(Tf, X, free, deadline=deadline)
    if cost > 1e-16 * nrm2:
        return None
    nice = _nice_values(denominators, max_abs)
    nice_f = np.array([float(v) for v in nice])
    # complexity tiers: 0 | +-1 | +-1/2, +-2 | the rest
    nice_c = np.array([0 if v == 0 else 1 if abs(v) == 1 else 2 if abs(v) in (2, Fraction(1, 2)) else 3
                       for v in nice], dtype=float)
    snapped: dict[int, Fraction] = {}
    n_uv = 2 * U.size
    banned: set[tuple[int, int]] = set()
    lm_calls = 0
    while len(snapped) < n_uv:
        if time.monotonic() > deadline or lm_calls > max_refits:
            return None
        flat = X.reshape(-1)
        cand = []
        for p in range(n_uv):
            if p in snapped:
                continue
            dist = np.abs(nice_f - flat[p])
            score = dist + penalty * nice_c
            order = np.argsort(score, kind="stable")
            for q in order[:4]:
                if (p, int(q)) not in banned:
                    cand.append((float(score[q]), p, int(q)))
                    break
        if not cand:
            return None
        cand.sort()
        batch = [c for c in cand if abs(nice_f[c[2]] - X.reshape(-1)[c[1]]) < 1e-7]
        trials = [batch] if len(batch) > 1 else []
        trials += [[c] for c in cand[:max_backtrack]]
        for trial in trials:
            Y = X.copy()
            fr = free.copy()
            for _, p, q in trial:
                Y.reshape(-1)[p] = nice_f[q]
                fr.reshape(-1)[p] = False
            Y, c = _lm(Tf, Y, fr, deadline=deadline)
            lm_calls += 1
            if c < tol:
                X, free = Y, fr
                for _, p, q in trial:
                    snapped[p] = nice[q]
                banned.clear()  # the point moved: earlier refusals may no longer hold
                break
            if len(trial) == 1:
                banned.add((trial[0][1], trial[0][2]))
    r, d = U.shape
    Uq = fraction_array([[snapped[s * d + i] for i in range(d)] for s in range(r)])
    Vq = fraction_array([[snapped[U.size + s * d + i] for i in range(d)] for s in range(r)])
    Wq = _exact_W(T, Uq, Vq)
    if Wq is None:
        return None
    cand = Scheme(Uq, Vq, Wq)
    return cand if cand.verify(T) else None


# --------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------
def als_search(T, rank: int, *, budget_s: float = 10.0, seed: int = 0, max_restarts: int | None = None,
               progress: Progress | None = None, denominators=(1, 2, 3, 4), max_abs: int = 4):
    """Try to find an exact rational scheme of rank <= ``rank`` by ALS + rounding (terms that vanish
    in the fit are dropped, so the result may have fewer terms).

    Returns an exactly verified Scheme, or None when the budget (seconds) or
    ``max_restarts`` runs out.  Restart k is seeded with ``[seed, k]``, so the result is reproducible
    whenever it is found within the budget.
    """
    T = fraction_array(T)
    Tf = T.astype(float)
    t0 = time.monotonic()
    deadline = t0 + budget_s
    k = 0
    last_report = 0.0
    while time.monotonic() < deadline and (max_restarts is None or k < max_restarts):
        rng = np.random.default_rng([seed, k])
        k += 1
        U, V, W, res = als_fit(Tf, rank, rng, deadline=deadline)
        now = time.monotonic()
        if progress is not None and now - last_report > 0.3:
            last_report = now
            progress(rank, now - t0, f"ALS rank {rank}: restart {k}, residual {res:.1e}")
        if res > 1e-6:
            continue
        out = round_scheme(T, U, V, W, denominators=denominators, max_abs=max_abs, deadline=deadline)
        if out is not None:
            return out
    return None
