"""Flip-graph random walks (Kauers--Moosbauer) for arbitrary 3-tensors over GF(p).

State: a list of rank-one terms ``c * u (x) v (x) w`` over GF(p) summing to
``T mod p``.  Every factor is stored *normalised* (first nonzero coordinate,
i.e. lowest coordinate index, equal to 1) and packed into a Python int, the
scalar ``c`` separately.  "Sharing a factor up to scale" is then plain
equality of packed ints, so flip partners and reductions are found with hash
tables in O(group size).

Packing: over GF(2) a vector is a bit mask (addition = XOR).  Over odd p
every coordinate occupies a lane of ``w`` bits with a guard bit, and
addition mod p is done lane-parallel (SWAR) with a handful of big-int ops.

Moves (Kauers-Moosbauer 2023; docs/schemes.md):

* flip: ``u(x)v(x)w + u(x)v'(x)w' -> u(x)(v+l v')(x)w + u(x)v'(x)(w'-l w)`` for two
  terms sharing a factor in any slot (the other two slots in either role);
* reduction: two terms equal in two slots merge (rank -1), zero terms vanish;
* plus transition (rank +1): ``a(x)b(x)c + a'(x)b'(x)c' -> (a-a')(x)b(x)c +
  a'(x)(b-b')(x)c + a'(x)b'(x)(c+c')`` after ``plateau`` flips without progress.

Public API: :func:`flip_search` (returns an exactly verified
:class:`codegen.schemes.Scheme`).  See also :class:`FlipWalk` for GF(p)-only
walks.
"""

from __future__ import annotations

import math
import random
import time
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np

from ..exact import fraction_array
from ..schemes import Scheme, naive
from .lift import lift_scheme, residue, tensor_mod_p

__all__ = [
    "flip_search",
    "FlipWalk",
    "walk_modp",
]


# ---------------------------------------------------------------------------
# packed GF(p) vectors
# ---------------------------------------------------------------------------

class _Packed:
    """Packed vectors of length d over GF(p)."""

    def __init__(self, p: int, d: int):
        if p < 2 or any(p % q == 0 for q in range(2, int(math.isqrt(p)) + 1)):
            raise ValueError(f"p={p} is not a prime")
        self.p = p
        self.d = d
        if p == 2:
            self.w = 1
        else:
            self.w = (2 * p - 2).bit_length() + 1
        w = self.w
        self.lane = (1 << w) - 1
        ones = 0
        for i in range(d):
            ones |= 1 << (w * i)
        self.ones = ones
        self.guard = ones << (w - 1)
        self.cadd = ones * ((1 << (w - 1)) - p)
        self.pm = ones * p
        self.inv = [0] + [pow(c, -1, p) for c in range(1, p)]

    # -- conversions -------------------------------------------------------
    def pack(self, vec: Iterable[int]) -> int:
        x = 0
        w, p = self.w, self.p
        for i, a in enumerate(vec):
            x |= (int(a) % p) << (w * i)
        return x

    def unpack(self, x: int) -> list[int]:
        w, lane = self.w, self.lane
        return [(x >> (w * i)) & lane for i in range(self.d)]

    # -- arithmetic (odd p) --------------------------------------------------
    def red(self, s: int) -> int:
        """Lane-wise reduction of lanes in [0, 2p-2] to [0, p-1]."""
        return s - ((((s + self.cadd) & self.guard) >> (self.w - 1)) * self.p)

    def add(self, x: int, y: int) -> int:
        if self.p == 2:
            return x ^ y
        return self.red(x + y)

    def neg(self, x: int) -> int:
        if self.p == 2:
            return x
        return self.red(self.pm - x)

    def scal(self, x: int, c: int) -> int:
        p = self.p
        c %= p
        if c == 1 or p == 2:
            return x if c else 0
        if c == 0:
            return 0
        if c == p - 1:
            return self.red(self.pm - x)
        red = self.red
        res = 0
        b = x
        while c:
            if c & 1:
                res = red(res + b)
            c >>= 1
            if c:
                b = red(b + b)
        return res

    def normalize(self, x: int) -> tuple[int, int]:
        """x = c * n with n's first nonzero lane equal to 1; returns (c, n)."""
        if x == 0:
            return 0, 0
        if self.p == 2:
            return 1, x
        low = (x & -x).bit_length() - 1
        sh = (low // self.w) * self.w
        t = (x >> sh) & self.lane
        if t == 1:
            return 1, x
        return t, self.scal(x, self.inv[t])


# ---------------------------------------------------------------------------
# the walk
# ---------------------------------------------------------------------------

class FlipWalk:
    """A flip-graph random walk over GF(p) for a fixed 3-tensor.

    ``terms`` is a list of (u, v, w) integer vectors (any representatives); the
    walk checks that they sum to ``Tp`` (the tensor mod p).
    """

    def __init__(self, Tp: np.ndarray, p: int, terms, seed: int = 0, *,
                 plateau: int | None = None, max_excess: int = 2,
                 group_reduce: bool = False):
        Tp = np.asarray(Tp, dtype=np.int64) % p
        if Tp.ndim != 3:
            raise ValueError("Tp must be a 3-tensor (rectangular shapes are fine)")
        self.Tp = Tp
        self.p = p
        self.dims = Tp.shape
        self.pk = [_Packed(p, n) for n in Tp.shape]
        self.rng = random.Random(seed)
        self.max_excess = max_excess
        self.group_reduce = group_reduce
        # storage (by term id)
        self.F = [[], [], []]
        self.C = []
        self.free: list[int] = []
        self.active: list[int] = []
        self.apos: list[int] = []
        self.groups = [dict(), dict(), dict()]
        self.gpos = [[], [], []]
        self.cand: list[int] = []
        self.cpos: list[int] = []
        for (u, v, w) in terms:
            self._add_raw(u, v, w)
        self._reduce_all()
        if not self.check():
            raise ValueError("terms do not sum to T mod p")
        r0 = max(1, len(self.active))
        self.plateau = plateau if plateau is not None else 2000 + 200 * r0
        self.best_rank = self.rank
        self.best_state = self.snapshot()
        self.flips = 0
        self.since = 0

    # -- storage helpers -----------------------------------------------------
    @property
    def rank(self) -> int:
        return len(self.active)

    def _new_id(self) -> int:
        if self.free:
            return self.free.pop()
        i = len(self.C)
        self.C.append(0)
        for s in range(3):
            self.F[s].append(0)
            self.gpos[s].append(-1)
            self.cpos.append(-1)
        self.apos.append(-1)
        return i

    # Flip candidates: codes 3*i+s for every term i whose slot-s group has
    # at least two members; sampled uniformly (no rejection sampling).
    def _cand_add(self, code: int) -> None:
        self.cpos[code] = len(self.cand)
        self.cand.append(code)

    def _cand_del(self, code: int) -> None:
        cand = self.cand
        pos = self.cpos[code]
        last = cand.pop()
        if last != code:
            cand[pos] = last
            self.cpos[last] = pos
        self.cpos[code] = -1

    def _group_add(self, s: int, i: int, key: int) -> None:
        g = self.groups[s].get(key)
        if g is None:
            self.groups[s][key] = [i]
            self.gpos[s][i] = 0
        else:
            self.gpos[s][i] = len(g)
            g.append(i)
            if len(g) == 2:
                self._cand_add(3 * g[0] + s)
            self._cand_add(3 * i + s)

    def _group_del(self, s: int, i: int, key: int) -> None:
        gs = self.groups[s]
        g = gs[key]
        gpos = self.gpos[s]
        pos = gpos[i]
        last = g.pop()
        if last != i:
            g[pos] = last
            gpos[last] = pos
        n = len(g)
        if n == 0:
            del gs[key]
        else:
            self._cand_del(3 * i + s)
            if n == 1:
                self._cand_del(3 * g[0] + s)

    def _insert(self, f0: int, f1: int, f2: int, c: int) -> int:
        i = self._new_id()
        self.F[0][i] = f0
        self.F[1][i] = f1
        self.F[2][i] = f2
        self.C[i] = c
        self._group_add(0, i, f0)
        self._group_add(1, i, f1)
        self._group_add(2, i, f2)
        self.apos[i] = len(self.active)
        self.active.append(i)
        return i

    def _remove(self, i: int) -> None:
        for s in range(3):
            self._group_del(s, i, self.F[s][i])
        pos = self.apos[i]
        last = self.active.pop()
        if last != i:
            self.active[pos] = last
            self.apos[last] = pos
        self.apos[i] = -1
        self.free.append(i)

    def _set(self, s: int, i: int, key: int) -> None:
        self._group_del(s, i, self.F[s][i])
        self.F[s][i] = key
        self._group_add(s, i, key)

    def _add_raw(self, u, v, w) -> None:
        pk = self.pk
        cu, nu = pk[0].normalize(pk[0].pack(u))
        cv, nv = pk[1].normalize(pk[1].pack(v))
        cw, nw = pk[2].normalize(pk[2].pack(w))
        c = (cu * cv * cw) % self.p
        if c == 0:
            return
        self._insert(nu, nv, nw, c)

    # -- reductions ----------------------------------------------------------
    def _merge(self, i: int, k: int, t: int) -> None:
        """Terms i, k agree in the two slots other than t: merge into i."""
        p = self.p
        Ft = self.F[t]
        if p == 2:
            x = Ft[i] ^ Ft[k]
            c = 1
        else:
            pk = self.pk[t]
            x = pk.add(pk.scal(Ft[i], self.C[i]), pk.scal(Ft[k], self.C[k]))
            c, x = pk.normalize(x)
        self._remove(k)
        if x == 0:
            self._remove(i)
        else:
            self._set(t, i, x)
            self.C[i] = c

    def _reduce_term(self, i: int, t: int) -> None:
        """Term i just changed its slot-t factor (the state was reduced before):
        perform all reductions this enables."""
        F = self.F
        groups = self.groups
        apos = self.apos
        while apos[i] >= 0:
            g = groups[t].get(F[t][i])
            if g is None or len(g) < 2:
                return
            t1 = (t + 1) % 3
            t2 = (t + 2) % 3
            F1, F2 = F[t1], F[t2]
            a1, a2 = F1[i], F2[i]
            for k in g:
                if k != i:
                    if F1[k] == a1:
                        self._merge(i, k, t2)
                        t = t2
                        break
                    if F2[k] == a2:
                        self._merge(i, k, t1)
                        t = t1
                        break
            else:
                return

    def _try_reduce(self, i: int) -> bool:
        F = self.F
        for t in range(3):
            g = self.groups[t].get(F[t][i])
            if g is None or len(g) < 2:
                continue
            t1 = (t + 1) % 3
            t2 = (t + 2) % 3
            F1, F2 = F[t1], F[t2]
            a1, a2 = F1[i], F2[i]
            for k in g:
                if k == i:
                    continue
                if F1[k] == a1:
                    self._merge(i, k, t2)
                    return True
                if F2[k] == a2:
                    self._merge(i, k, t1)
                    return True
        return False

    def _dependency(self, slot: int, vecs: list[int]):
        """Coefficients beta (not all 0) with sum beta_k vecs_k = 0 over GF(p), or None."""
        p = self.p
        if p == 2:
            basis = {}
            for k, x in enumerate(vecs):
                comb = 1 << k
                while x:
                    low = x & -x
                    b = basis.get(low)
                    if b is None:
                        basis[low] = (x, comb)
                        break
                    x ^= b[0]
                    comb ^= b[1]
                if not x:
                    return [(comb >> q) & 1 for q in range(len(vecs))]
            return None
        pk = self.pk[slot]
        w, lane = pk.w, pk.lane
        m = len(vecs)
        basis = {}
        for k, x in enumerate(vecs):
            comb = [0] * m
            comb[k] = 1
            while x:
                low = (x & -x).bit_length() - 1
                sh = (low // w) * w
                tv = (x >> sh) & lane
                b = basis.get(sh)
                if b is None:
                    it = pk.inv[tv]
                    basis[sh] = (pk.scal(x, it), [(c * it) % p for c in comb])
                    break
                x = pk.add(x, pk.scal(b[0], p - tv))
                bc = b[1]
                comb = [(c - tv * e) % p for c, e in zip(comb, bc)]
            if not x:
                return comb
        return None

    def _group_reduce(self, x: int):
        """Generalised reduction: if the terms sharing a factor with term x in
        some slot have linearly dependent factors in another slot, remove one
        of them (rank -1).  Returns the ids of modified terms, or None."""
        F = self.F
        C = self.C
        p = self.p
        for t in range(3):
            G = self.groups[t].get(F[t][x])
            if G is None or len(G) < 3:
                continue
            G = list(G)
            for (sx, sy) in (((t + 1) % 3, (t + 2) % 3), ((t + 2) % 3, (t + 1) % 3)):
                Fx, Fy = F[sx], F[sy]
                beta = self._dependency(sx, [Fx[k] for k in G])
                if beta is None:
                    continue
                nz = [q for q in range(len(G)) if beta[q]]
                q0 = nz[int(self.rng.random() * len(nz))]
                k0 = G[q0]
                # A_k = C_k f_k^x, B_k = f_k^y ; alpha_k = beta_k / C_k
                # sum_k A_k (x) B_k = sum_{k != k0} (A_k + g_k A_k0) (x) B_k with
                # g_k = -beta_k / beta_k0 * C_k0 / C_k ... expressed on f vectors:
                # f_k0^x = -sum_{k != k0} (beta_k / beta_k0) f_k^x, so
                # C_k0 f_k0^x (x) f_k0^y = sum_k f_k^x (x) (-(beta_k/beta_k0) C_k0 f_k0^y)
                # and term k becomes f^t (x) f_k^x (x) (C_k f_k^y - (beta_k/beta_k0) C_k0 f_k0^y)
                b0inv = pow(beta[q0], -1, p) if p != 2 else 1
                fy0 = Fy[k0]
                c0 = C[k0]
                self._remove(k0)
                changed = []
                pky = self.pk[sy]
                for q in nz:
                    if q == q0:
                        continue
                    k = G[q]
                    if p == 2:
                        ny = Fy[k] ^ fy0
                        cy = 1
                    else:
                        g = (p - (beta[q] * b0inv) % p) % p
                        cy, ny = pky.normalize(pky.add(pky.scal(Fy[k], C[k]),
                                                        pky.scal(fy0, (g * c0) % p)))
                    if ny == 0:
                        self._remove(k)
                    else:
                        self._set(sy, k, ny)
                        C[k] = cy
                        changed.append(k)
                return changed
        return None

    def _reduce_from(self, ids) -> int:
        """Exhaustively reduce starting from the given term ids; returns #reductions."""
        n = 0
        stack = list(ids)
        apos = self.apos
        gr = self.group_reduce
        while stack:
            i = stack.pop()
            while apos[i] >= 0 and self._try_reduce(i):
                n += 1
            if gr and apos[i] >= 0:
                ch = self._group_reduce(i)
                if ch is not None:
                    n += 1
                    stack.extend(ch)
                    stack.append(i)
        return n

    def _reduce_all(self) -> None:
        changed = True
        while changed:
            changed = self._reduce_from(list(self.active)) > 0

    # -- moves ---------------------------------------------------------------
    def plus_transition(self) -> bool:
        """Rank +1 move on two random terms (returns False if none applies)."""
        rnd = self.rng.random
        act = self.active
        n = len(act)
        if n < 2:
            return False
        F = self.F
        p = self.p
        for _ in range(50):
            i = act[int(rnd() * n)]
            j = act[int(rnd() * n)]
            if i == j:
                continue
            x = int(rnd() * 3)
            if rnd() < 0.5:
                y, z = (x + 1) % 3, (x + 2) % 3
            else:
                y, z = (x + 2) % 3, (x + 1) % 3
            if F[x][i] == F[x][j] or F[y][i] == F[y][j]:
                continue
            Xi, Yi, Zi = F[x][i], F[y][i], F[z][i]
            Xj, Yj, Zj = F[x][j], F[y][j], F[z][j]
            ci, cj = self.C[i], self.C[j]
            if p == 2:
                n1, k1 = Xi ^ Xj, 1
                n2, k2 = Yi ^ Yj, 1
                n3, k3 = Zi ^ Zj, 1
                c1 = c2 = 1
            else:
                px, py, pz = self.pk[x], self.pk[y], self.pk[z]
                k1, n1 = px.normalize(px.add(Xi, px.neg(Xj)))
                k2, n2 = py.normalize(py.add(Yi, py.neg(Yj)))
                k3, n3 = pz.normalize(pz.add(pz.scal(Zj, cj), pz.scal(Zi, ci)))
                c1 = (k1 * ci) % p
                c2 = (k2 * ci) % p
            # term i -> (n1, Yi, Zi) * c1 ; new term (Xj, n2, Zi) * c2 ;
            # term j -> (Xj, Yj, n3) * k3
            self._set(x, i, n1)
            self.C[i] = c1
            f = [0, 0, 0]
            f[x], f[y], f[z] = Xj, n2, Zi
            new = self._insert(f[0], f[1], f[2], c2)
            if n3 == 0:
                self._remove(j)
                self._reduce_from([i, new])
            else:
                self._set(z, j, n3)
                self.C[j] = k3
                self._reduce_from([i, new, j])
            return True
        return False

    def snapshot(self) -> tuple:
        F0, F1, F2, C = self.F[0], self.F[1], self.F[2], self.C
        return tuple(sorted((F0[i], F1[i], F2[i], C[i]) for i in self.active))

    def restore(self, snap) -> None:
        self.F = [[], [], []]
        self.C = []
        self.free = []
        self.active = []
        self.apos = []
        self.groups = [dict(), dict(), dict()]
        self.gpos = [[], [], []]
        self.cand = []
        self.cpos = []
        for (a, b, c, s) in snap:
            self._insert(a, b, c, s)

    def arrays(self, snap=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(U, V, W) int64 arrays mod p of the current (or given) state."""
        if snap is None:
            snap = self.snapshot()
        p = self.p
        r = len(snap)
        U = np.zeros((r, self.dims[0]), dtype=np.int64)
        V = np.zeros((r, self.dims[1]), dtype=np.int64)
        W = np.zeros((r, self.dims[2]), dtype=np.int64)
        for s, (a, b, c, k) in enumerate(snap):
            U[s] = self.pk[0].unpack(a)
            V[s] = self.pk[1].unpack(b)
            W[s] = (np.array(self.pk[2].unpack(c), dtype=np.int64) * k) % p
        return U, V, W

    def check(self) -> bool:
        U, V, W = self.arrays()
        S = np.einsum("si,sj,sk->ijk", U, V, W) % self.p
        return bool(np.array_equal(S, self.Tp))

    # -- main loop -------------------------------------------------------------
    def run(self, max_flips: int, deadline: float | None = None,
            on_improve: Callable[["FlipWalk"], bool | None] | None = None,
            target_rank: int | None = None) -> int:
        """Walk for at most ``max_flips`` flips (or until ``deadline``).

        ``on_improve(walk)`` is called whenever the walk reaches a rank below
        its best so far; if it returns True the walk stops.  Returns the best
        rank reached.
        """
        rng = self.rng
        rnd = rng.random
        p = self.p
        F = self.F
        C = self.C
        pks = self.pk
        plateau = self.plateau
        perf = time.perf_counter
        flips_done = 0
        others = ((1, 2), (0, 2), (0, 1))
        reduce_term = self._reduce_term
        set_slot = self._set
        remove = self._remove
        group_red = self.group_reduce
        while flips_done < max_flips:
            if (flips_done & 1023) == 0 and deadline is not None and perf() > deadline:
                break
            act = self.active
            n = len(act)
            if target_rank is not None and self.best_rank <= target_rank:
                break
            if n < 2:
                break
            # ---- choose a flip ----
            cand = self.cand
            nc = len(cand)
            if nc == 0:
                # no two terms share a factor: only a plus transition helps
                if not self.plus_transition():
                    break
                self.since = 0
                flips_done += 1
                continue
            code = cand[int(rnd() * nc)]
            i, s = divmod(code, 3)
            g = self.groups[s][F[s][i]]
            lg = len(g)  # >= 2 for every candidate
            k = int(rnd() * (lg - 1))
            j = g[k]
            if j == i:
                j = g[lg - 1]
            a, b = others[s]
            if rnd() < 0.5:
                a, b = b, a
            F = self.F
            Fa, Fb = F[a], F[b]
            # term i: slot a += lam * (term j slot a); term j: slot b -= lam * (term i slot b)
            if p == 2:
                na = Fa[i] ^ Fa[j]
                nb = Fb[j] ^ Fb[i]
                ca = cb = 1
            else:
                pa, pb = pks[a], pks[b]
                lam = 1 + int(rnd() * (p - 1))
                ca, na = pa.normalize(pa.add(pa.scal(Fa[i], C[i]), pa.scal(Fa[j], lam)))
                cb, nb = pb.normalize(pb.add(pb.scal(Fb[j], C[j]), pb.scal(Fb[i], p - lam)))
            self.flips += 1
            flips_done += 1
            self.since += 1
            r_before = n
            if na == 0:
                remove(i)
            else:
                set_slot(a, i, na)
                C[i] = ca
            if nb == 0:
                remove(j)
            else:
                set_slot(b, j, nb)
                C[j] = cb
            # ---- reductions ----
            if group_red:
                self._reduce_from((i, j))
            else:
                reduce_term(i, a)
                reduce_term(j, b)
            r_now = len(self.active)
            if r_now < r_before:
                self.since = 0
                if r_now < self.best_rank:
                    self.best_rank = r_now
                    self.best_state = self.snapshot()
                    if on_improve is not None and on_improve(self):
                        break
                continue
            if self.since >= plateau:
                self.since = 0
                if r_now < self.best_rank + self.max_excess:
                    self.plus_transition()
                else:
                    self.restore(self.best_state)
                    F = self.F
                    C = self.C
                    reduce_term = self._reduce_term
                    set_slot = self._set
                    remove = self._remove
                # plus transitions may trigger reductions
                r_now = len(self.active)
                if r_now < self.best_rank:
                    self.best_rank = r_now
                    self.best_state = self.snapshot()
                    if on_improve is not None and on_improve(self):
                        break
            F = self.F
        return self.best_rank


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _naive_terms_modp(Tp: np.ndarray):
    d1, d2, d3 = Tp.shape
    terms = []
    for i in range(d1):
        for j in range(d2):
            w = Tp[i, j, :]
            if w.any():
                u = [0] * d1
                v = [0] * d2
                u[i] = 1
                v[j] = 1
                terms.append((u, v, [int(x) for x in w]))
    return terms


def _scheme_terms_modp(U, V, W, p: int):
    """Reduce an exact scheme mod p (ValueError if a denominator is divisible by p)."""
    terms = []
    for s in range(U.shape[0]):
        u = [residue(x, p) for x in U[s]]
        v = [residue(x, p) for x in V[s]]
        w = [residue(x, p) for x in W[s]]
        if any(u) and any(v) and any(w):
            terms.append((u, v, w))
    return terms


def walk_modp(T, *, prime: int = 2, flips: int = 100000, seed: int = 0, start=None,
              plateau: int | None = None):
    """Run one GF(p) walk; returns (best rank, (U, V, W) int arrays mod p)."""
    Tp = tensor_mod_p(T, prime)
    if start is None:
        terms = _naive_terms_modp(Tp)
    else:
        terms = _scheme_terms_modp(*Scheme.of(*start), prime)
    w = FlipWalk(Tp, prime, terms, seed=seed, plateau=plateau)
    w.run(flips)
    return w.best_rank, w.arrays(w.best_state)


# ---------------------------------------------------------------------------
# public search
# ---------------------------------------------------------------------------

def _derive_seed(seed: int, k: int) -> int:
    return (int(seed) * 1_000_003 + 7919 * k + 12345) & 0xFFFFFFFFFFFF


def flip_search(T, *, prime: int = 2, budget_s: float = 30.0, seed: int = 0,
                start=None, target_rank: int | None = None, progress=None,
                max_walks: int | None = None, walk_flips: int | None = None):
    """Search for a low-rank exact scheme of T with flip-graph walks over GF(prime).

    Runs a sequence of walks (derived seeds, growing lengths; odd-numbered
    walks restart from the best GF(p) schemes found so far) for ``budget_s``
    seconds of wall time.  Every new best GF(p) scheme -- and, spaced out,
    further schemes below the best *lifted* rank -- is lifted to an exact
    rational scheme with :mod:`codegen.search.lift` (trivial lift, then Hensel).

    Returns the lowest-rank exactly verified :class:`Scheme` (x goes with U);
    at worst the naive scheme, or ``start`` when that is better.

    * ``T``: (d, d, d) array of exact rationals; a denominator
      divisible by ``prime`` raises ValueError.
    * ``start``: optional exact scheme to start the walks from.  It must
      verify (ValueError otherwise); if its denominators are not invertible
      mod p it is still a candidate result but the walks start from naive.
    * ``target_rank``: stop as soon as a verified scheme of rank <= target.
    * ``progress(rank, elapsed_s)``: best verified rank so far, called at most
      ~4 times per second (and on every improvement).
    * Reproducibility: all decisions derive from ``seed``; wall time only
      decides when to stop (and cuts over-long lifts).  ``max_walks`` and
      ``walk_flips`` bound the work for budget-independent runs.
    """
    t0 = time.perf_counter()
    deadline = t0 + float(budget_s)
    T = fraction_array(T)
    if T.ndim != 3 or len(set(T.shape)) != 1:
        raise ValueError(f"T must be a structure tensor of shape (d, d, d), got {T.shape}")
    p = int(prime)
    Tp = tensor_mod_p(T, p)  # ValueError for denominators divisible by p

    best = naive(T)
    start_terms = None
    if start is not None:
        S = Scheme.of(*start)
        if not S.verify(T):
            raise ValueError("start is not an exact scheme of T")
        if S.rank < best.rank:
            best = S
        try:
            start_terms = _scheme_terms_modp(*S, p)
        except ValueError:
            start_terms = None
    if start_terms is None:
        start_terms = _naive_terms_modp(Tp)

    st = {"best": best, "rank": best.rank, "modp_best": None,
          "tried": set(), "tries_at": {}, "since_lift": 0, "last_prog": -1.0,
          "pool": []}
    d3 = int(np.prod(Tp.shape))

    def report(force: bool = False) -> None:
        if progress is None:
            return
        now = time.perf_counter()
        if force or now - st["last_prog"] >= 0.25:
            st["last_prog"] = now
            try:
                progress(st["rank"], now - t0)
            except Exception:
                pass

    def done() -> bool:
        return target_rank is not None and st["rank"] <= target_rank

    if done():
        report(True)
        return st["best"]

    def try_lift(walk: FlipWalk, forced: bool) -> None:
        r = walk.rank
        if r >= st["rank"]:
            return
        snap = walk.snapshot()
        if snap in st["tried"]:
            return
        n_at = st["tries_at"].get(r, 0)
        if not forced:
            gap = max(4096, 20 * r * d3)
            if n_at >= 40 or st["since_lift"] < gap:
                return
        st["tried"].add(snap)
        st["tries_at"][r] = n_at + 1
        st["since_lift"] = 0
        U, V, W = walk.arrays(snap)
        now = time.perf_counter()
        res = lift_scheme(T, U, V, W, p, seed=n_at,
                          deadline=min(deadline, now + max(5.0, 0.25 * float(budget_s))))
        if res is not None and res.rank < st["rank"] and res.verify(T):
            st["best"] = res
            st["rank"] = res.rank
            report(True)

    def on_improve(walk: FlipWalk) -> bool:
        r = walk.rank
        if st["modp_best"] is None or r < st["modp_best"]:
            st["modp_best"] = r
            st["pool"] = []
        if r == st["modp_best"] and len(st["pool"]) < 16:
            st["pool"].append(walk.snapshot())
        try_lift(walk, forced=True)
        report()
        return done()

    Tp_terms = start_terms
    k = 0
    while time.perf_counter() < deadline and not done():
        if max_walks is not None and k >= max_walks:
            break
        walk = FlipWalk(Tp, p, Tp_terms, seed=_derive_seed(seed, k))
        if k % 2 == 1 and st["pool"] and st["modp_best"] < walk.rank:
            walk.restore(st["pool"][(k // 2) % len(st["pool"])])
            walk.best_rank = walk.rank
            walk.best_state = walk.snapshot()
        r0 = walk.rank
        if walk_flips is not None:
            nflips = int(walk_flips)
        else:
            base = max(20000, 100 * r0 * r0)
            nflips = base << min(6, k // 2)
        if on_improve(walk):
            break
        chunk = 4096
        flips_at_start = walk.flips
        while walk.flips - flips_at_start < nflips and time.perf_counter() < deadline:
            before = walk.flips
            walk.run(min(chunk, nflips - (walk.flips - flips_at_start)),
                     deadline=deadline, on_improve=on_improve)
            step = walk.flips - before
            st["since_lift"] += step
            if done():
                break
            if walk.rank < st["rank"]:
                try_lift(walk, forced=False)
                if done():
                    break
            report()
            if step == 0:
                break  # walk cannot move (e.g. rank <= 1)
        if walk.flips == 0:
            break  # no flip is possible at all: further walks are pointless
        k += 1
    report(True)
    return st["best"]
