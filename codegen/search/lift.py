"""Lifting GF(p) bilinear schemes to exact rational schemes.

A scheme over GF(p) is three integer arrays U, V, W of shape (r, d) with entries
in 0..p-1 such that ``T[i,j,k] = sum_s U[s,i] V[s,j] W[s,k] (mod p)``.  This
module turns such a scheme into an exact rational one (docs/schemes.md):

1. *trivial lifts*: read every residue as a small rational (centred
   representatives, and for odd p also readings such as 2 -> 1/2 over GF(3));
2. *Hensel lifting*: gauge-fix one nonzero entry of every u_s and v_s, then
   repeatedly solve the Brent Jacobian mod p for the next p-adic digit,
   ``J delta = (T - sum u (x) v (x) w) / p^k  (mod p)``, and rationally
   reconstruct every coordinate mod p^N with |num|, |den| <= sqrt(p^N / 2).

Every candidate is verified exactly with :class:`fractions.Fraction` before it
is returned; an unverified scheme is never returned.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from fractions import Fraction

import numpy as np

from ..exact import fraction_array, to_fraction
from ..schemes import Scheme

__all__ = [
    "residue",
    "tensor_mod_p",
    "ratrec",
    "lift_scheme",
    "trivial_lift",
    "hensel_lift",
]


# ---------------------------------------------------------------------------
# exact helpers
# ---------------------------------------------------------------------------

def residue(x, p: int) -> int:
    """x (rational) mod p; ValueError when the denominator is divisible by p."""
    f = to_fraction(x)
    if f.denominator % p == 0:
        raise ValueError(f"denominator of {f} is not invertible mod {p}")
    return (f.numerator * pow(f.denominator, -1, p)) % p


def tensor_mod_p(T, p: int) -> np.ndarray:
    """int64 array T mod p (ValueError if a denominator is divisible by p)."""
    T = np.asarray(T, dtype=object)
    out = np.zeros(T.shape, dtype=np.int64)
    for idx in np.ndindex(T.shape):
        out[idx] = residue(T[idx], p)
    return out


def _padic(x, m: int) -> int:
    f = to_fraction(x)
    return (f.numerator * pow(f.denominator, -1, m)) % m


def ratrec(a: int, m: int):
    """Rational reconstruction of a mod m with |num|, |den| <= sqrt(m/2).

    Returns a Fraction or None.
    """
    a %= m
    bound = math.isqrt(m // 2)
    r0, r1 = m, a
    s0, s1 = 0, 1
    while r1 > bound:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        s0, s1 = s1, s0 - q * s1
    if s1 == 0 or abs(s1) > bound:
        return None
    if math.gcd(s1, m) != 1:
        return None
    if (r1 - a * s1) % m != 0:  # paranoia
        return None
    return Fraction(r1, s1)


# ---------------------------------------------------------------------------
# linear algebra mod p
# ---------------------------------------------------------------------------

class _Deadline(Exception):
    pass


def _gj_solver(J: np.ndarray, p: int, col_order, deadline: float | None = None):
    """Gauss--Jordan elimination of ``[J[:, col_order] | I_m]`` mod p.

    Rows are packed into uint64 words (1 bit per entry for p = 2, SWAR lanes
    with a guard bit for odd p).  Returns ``(piv_cols, R)`` where ``piv_cols``
    are original column indices (earlier entries of ``col_order`` preferred)
    and ``R`` is a (rank x m) int64 matrix such that for every E in the column
    space of J, ``delta[piv_cols] = R @ E (mod p)`` (other entries 0) solves
    ``J delta = E (mod p)``.
    """
    col_order = list(col_order)
    m = J.shape[0]
    n = len(col_order)
    if p == 2:
        w = 1
    else:
        w = (2 * p - 2).bit_length() + 1
    L = 64 // w
    lane = np.uint64((1 << w) - 1)
    ncols = n + m
    nwords = -(-ncols // L)
    # build and pack the augmented matrix, a block of rows at a time
    A = np.zeros((m, nwords), dtype=np.uint64)
    shifts = (np.arange(L, dtype=np.uint64) * np.uint64(w))
    co = np.array(col_order, dtype=np.int64)
    blk = 256
    for r0 in range(0, m, blk):
        r1 = min(m, r0 + blk)
        full = np.zeros((r1 - r0, nwords * L), dtype=np.uint64)
        full[:, :n] = J[r0:r1][:, co].astype(np.uint64) % np.uint64(p)
        full[np.arange(r1 - r0), n + np.arange(r0, r1)] = 1
        full = full.reshape(r1 - r0, nwords, L) << shifts
        A[r0:r1] = np.bitwise_or.reduce(full, axis=2)
    if p != 2:
        ones = 0
        for i in range(L):
            ones |= 1 << (w * i)
        G = np.uint64(ones << (w - 1))
        CADD = np.uint64(ones * ((1 << (w - 1)) - p))
        PM = np.uint64(ones * p)
        wm1 = np.uint64(w - 1)
        pp = np.uint64(p)

        def red(x):
            return x - (((x + CADD) & G) >> wm1) * pp
    piv_cols: list[int] = []
    r = 0
    for c in range(n):
        if r == m:
            break
        if deadline is not None and (c & 63) == 0 and time.perf_counter() > deadline:
            raise _Deadline()
        wd, ln = divmod(c, L)
        sh = np.uint64(ln * w)
        vals = (A[r:, wd] >> sh) & lane
        nz = np.flatnonzero(vals)
        if nz.size == 0:
            continue
        k = r + int(nz[0])
        if k != r:
            A[[r, k]] = A[[k, r]]
        t = int((A[r, wd] >> sh) & lane)
        row = A[r, wd:].copy()
        if p != 2 and t != 1:
            # scale the pivot row by t^-1 (double and add)
            ci = pow(t, -1, p)
            res = np.zeros_like(row)
            b = row
            while ci:
                if ci & 1:
                    res = red(res + b)
                ci >>= 1
                if ci:
                    b = red(b + b)
            row = res
            A[r, wd:] = row
        allv = (A[:, wd] >> sh) & lane
        allv[r] = 0
        rows = np.flatnonzero(allv)
        if rows.size:
            if p == 2:
                A[rows, wd:] ^= row
            else:
                fv = allv[rows]
                neg = red(PM - row)  # -row
                mult = {1: neg}
                cur = neg
                for f in range(2, p):
                    cur = red(cur + neg)
                    mult[f] = cur  # = -f * row
                for f in range(1, p):
                    sel = rows[fv == f]
                    if sel.size:
                        A[sel, wd:] = red(A[sel, wd:] + mult[f])
        piv_cols.append(col_order[c])
        r += 1
    rho = r
    # unpack the identity part of the pivot rows
    R = np.zeros((rho, m), dtype=np.int64)
    if rho:
        cols = n + np.arange(m)
        wds, lns = np.divmod(cols, L)
        sub = A[:rho][:, wds]
        R[:] = ((sub >> (lns.astype(np.uint64) * np.uint64(w))[None, :]) & lane).astype(np.int64)
    return piv_cols, R


# ---------------------------------------------------------------------------
# trivial lifts
# ---------------------------------------------------------------------------

def _centred(x: int, p: int) -> int:
    x %= p
    return x - p if x > p // 2 else x


def _small_rational_readings(p: int) -> dict[int, list[Fraction]]:
    """For each residue, small rationals reducing to it, best first."""
    cands = set()
    for den in (1, 2, 3, 4, 8):
        if den % p == 0:
            continue
        for num in range(-8, 9):
            cands.add(Fraction(num, den))
    def key(f):
        h = max(abs(f.numerator), f.denominator)
        return (h, f.denominator != 1, f.denominator, f < 0, abs(f))
    out: dict[int, list[Fraction]] = {}
    for f in sorted(cands, key=key):
        out.setdefault(residue(f, p), []).append(f)
    return out


def _reading_maps(p: int, max_maps: int = 64):
    """Yield dicts residue -> Fraction (first: centred representatives)."""
    centred = {x: Fraction(_centred(x, p)) for x in range(p)}
    yield centred
    if p == 2:
        return
    readings = _small_rational_readings(p)
    alts = []
    for x in range(1, p):
        opts = [centred[x]] + [f for f in readings.get(x, [])[:3] if f != centred[x]]
        alts.append(opts[:2])
    count = 1
    # enumerate by number of non-default choices
    n = len(alts)
    for k in range(1, n + 1):
        for subset in itertools.combinations(range(n), k):
            if any(len(alts[t]) < 2 for t in subset):
                continue
            mp = dict(centred)
            for t in subset:
                mp[t + 1] = alts[t][1]
            yield mp
            count += 1
            if count >= max_maps:
                return


def trivial_lift(T, U, V, W, p: int):
    """Try reading the residues of U, V, W as small rationals; verify exactly."""
    T = fraction_array(T)
    U = np.asarray(U, dtype=np.int64) % p
    V = np.asarray(V, dtype=np.int64) % p
    W = np.asarray(W, dtype=np.int64) % p
    for mp in _reading_maps(p):
        conv = np.vectorize(lambda x: mp[int(x)], otypes=[object])
        cand = Scheme(conv(U), conv(V), conv(W))
        if cand.verify(T):
            return cand
    return None


# ---------------------------------------------------------------------------
# Hensel lifting
# ---------------------------------------------------------------------------

def _jacobian_mod_p(U, V, W, p):
    """Brent Jacobian of sum_s u_s (x) v_s (x) w_s w.r.t. (U, V, W), mod p (int8)."""
    r, d1 = U.shape
    d2 = V.shape[1]
    d3 = W.shape[1]
    U = U % p
    V = V % p
    W = W % p
    VW = (np.einsum("sj,sk->jks", V, W) % p).astype(np.int8)
    UW = (np.einsum("si,sk->iks", U, W) % p).astype(np.int8)
    UV = (np.einsum("si,sj->ijs", U, V) % p).astype(np.int8)
    JU = np.zeros((d1, d2, d3, r, d1), dtype=np.int8)
    JV = np.zeros((d1, d2, d3, r, d2), dtype=np.int8)
    JW = np.zeros((d1, d2, d3, r, d3), dtype=np.int8)
    for i in range(d1):
        JU[i, :, :, :, i] = VW
    for j in range(d2):
        JV[:, j, :, :, j] = UW
    for k in range(d3):
        JW[:, :, k, :, k] = UV
    m = d1 * d2 * d3
    return np.concatenate([JU.reshape(m, r * d1), JV.reshape(m, r * d2),
                           JW.reshape(m, r * d3)], axis=1)


def hensel_lift(T, U, V, W, p: int, *, seed: int = 0, attempts: int = 4,
                max_bits: int = 160, deadline: float | None = None,
                extra_attempts_for_height: int = 2):
    """Hensel-lift a GF(p) scheme to Z_p and rationally reconstruct it.

    Up to ``attempts`` pivot orders are tried (the free coordinates keep their
    centred residues; zeros are preferred as free coordinates).  After the
    first success, at most ``extra_attempts_for_height`` more orders are tried
    unless the coefficients are already small, and the lift with the smallest
    coefficient height wins.  Returns an exactly verified Scheme or None.
    """
    T = fraction_array(T)
    U = np.asarray(U, dtype=np.int64) % p
    V = np.asarray(V, dtype=np.int64) % p
    W = np.asarray(W, dtype=np.int64) % p
    r, d1 = U.shape
    d2, d3 = V.shape[1], W.shape[1]
    n = r * (d1 + d2 + d3)
    if r == 0:
        return None
    # number of p-adic digits to reach ~max_bits bits
    N = max(4, int(math.ceil(max_bits / math.log2(p))))
    checkpoints = sorted({max(2, int(math.ceil(b / math.log2(p))))
                          for b in (16, 32, 64, 128, 256, max_bits)})
    checkpoints = [c for c in checkpoints if c <= N]
    modN = p ** N
    Tflat = np.array([_padic(x, modN) for x in T.reshape(-1)], dtype=object)

    Jt = _jacobian_mod_p(U, V, W, p)
    if deadline is not None and time.perf_counter() > deadline:
        return None

    # gauge: first nonzero entry of each u_s and v_s is frozen
    gauge = set()
    for s in range(r):
        nzu = np.flatnonzero(U[s])
        nzv = np.flatnonzero(V[s])
        if nzu.size == 0 or nzv.size == 0 or not np.any(W[s]):
            return None  # zero term: caller should drop it first
        gauge.add(s * d1 + int(nzu[0]))
        gauge.add(r * d1 + s * d2 + int(nzv[0]))
    X0 = np.concatenate([U.reshape(-1), V.reshape(-1), W.reshape(-1)])
    nonzero_cols = [c for c in range(n) if c not in gauge and X0[c] != 0]
    zero_cols = [c for c in range(n) if c not in gauge and X0[c] == 0]

    rng = random.Random(seed)
    tried = set()
    best = None
    best_h = None
    first_ok = 0
    for att in range(attempts):
        if deadline is not None and time.perf_counter() > deadline:
            break
        nzc, zc = list(nonzero_cols), list(zero_cols)
        if att == 1:
            nzc.reverse()
            zc.reverse()
        elif att >= 2:
            rng.shuffle(nzc)
            rng.shuffle(zc)
        order = nzc + zc
        key = tuple(order)
        if key in tried:
            continue
        tried.add(key)
        res = _hensel_attempt(T, Tflat, Jt, X0, order, p, r, (d1, d2, d3), N,
                              checkpoints, deadline)
        if res is not None:
            h = _height(res)
            if best is None:
                first_ok = att
            if best is None or h < best_h:
                best, best_h = res, h
            if h[0] <= 2:
                break  # simple enough (coefficients in {0, +-1, +-2, +-1/2})
        if best is not None and att - first_ok >= extra_attempts_for_height:
            break
    return best


def _height(res):
    """(max height, total height) of a scheme's coefficients; smaller is nicer."""
    hs = [max(abs(x.numerator), x.denominator) for X in res for x in X.reshape(-1) if x != 0]
    return (max(hs, default=0), sum(hs))


def _hensel_attempt(T, Tflat, J, X0, order, p, r, dims, N, checkpoints, deadline):
    d1, d2, d3 = dims
    try:
        piv_cols, R = _gj_solver(J, p, order, deadline)
    except _Deadline:
        return None
    piv = np.array(piv_cols, dtype=np.int64)
    Rf = R.astype(np.float64)  # exact: entries < p, sums < m p^2
    X = np.array([_centred(int(x), p) for x in X0], dtype=object)
    n = X.shape[0]
    pk = p
    for k in range(1, N):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        Uo = X[: r * d1].reshape(r, d1)
        Vo = X[r * d1: r * (d1 + d2)].reshape(r, d2)
        Wo = X[r * (d1 + d2):].reshape(r, d3)
        S = np.einsum("si,sj,sk->ijk", Uo, Vo, Wo).reshape(-1)
        Rres = Tflat - S
        E_obj = Rres // pk
        if np.any(E_obj * pk != Rres):
            # not a solution mod p^k: the previous E was not in the column
            # space of J (obstruction), or the input scheme is invalid
            return None
        E = (E_obj % p).astype(np.int64)
        if E.any():
            if piv.size == 0:
                return None
            dp = np.rint(Rf @ E.astype(np.float64)).astype(np.int64) % p
            delta = np.zeros(n, dtype=object)
            delta[piv] = dp.astype(object)
            X = X + pk * delta
        pk *= p
        if (k + 1) in checkpoints:
            res = _reconstruct(T, X, pk, r, dims)
            if res is not None:
                return res
    return None


def _reconstruct(T, X, m, r, dims):
    d1, d2, d3 = dims
    vals = []
    for x in X:
        f = ratrec(int(x), m)
        if f is None:
            return None
        vals.append(f)
    Xf = np.array(vals, dtype=object)
    Uq = Xf[: r * d1].reshape(r, d1)
    Vq = Xf[r * d1: r * (d1 + d2)].reshape(r, d2)
    Wq = Xf[r * (d1 + d2):].reshape(r, d3)
    cand = Scheme(Uq, Vq, Wq)
    return cand if cand.verify(T) else None


def lift_scheme(T, U, V, W, p: int, *, seed: int = 0, attempts: int = 4,
                max_bits: int = 160, deadline: float | None = None):
    """Lift a GF(p) scheme (integer arrays mod p) to an exact rational scheme.

    Terms that vanish mod p are dropped first.  Tries the trivial lifts, then
    Hensel lifting.  Returns an exactly verified Scheme or None.
    """
    U = np.asarray(U, dtype=np.int64) % p
    V = np.asarray(V, dtype=np.int64) % p
    W = np.asarray(W, dtype=np.int64) % p
    keep = [s for s in range(U.shape[0]) if U[s].any() and V[s].any() and W[s].any()]
    U, V, W = U[keep], V[keep], W[keep]
    T = fraction_array(T)
    if U.shape[0] == 0:
        empty = Scheme.of([], [], [], dim=T.shape[0])
        return empty if empty.verify(T) else None
    res = trivial_lift(T, U, V, W, p)
    if res is not None:
        return res
    res = hensel_lift(T, U, V, W, p, seed=seed, attempts=attempts,
                      max_bits=max_bits, deadline=deadline)
    return res if res is not None and res.verify(T) else None
