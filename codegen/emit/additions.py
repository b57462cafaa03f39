"""Addition-minimal straight-line programs for the linear maps of a bilinear scheme.

A rank-r bilinear scheme (U, V, W), each r×d, evaluates three linear maps
(docs/design.md, docs/schemes.md):

* the weight pre-map      a = U·x      (r outputs from d inputs),
* the activation pre-map  b = V·y      (r outputs from d inputs),
* the post-map            z = Wᵀ·m     (d outputs from r inputs).

Each is a rational matrix applied to a vector.  This module represents such an
evaluation as an immutable :class:`LinearProgram` (a straight-line program whose
steps are rational linear combinations of earlier values) and searches for
programs with few additions by Paar-style greedy common-subexpression
elimination, generalised to rational coefficients and signs, with exhaustive
and seeded randomised tie-breaking.

Everything is exact (``fractions.Fraction``) and deterministic for given inputs
and seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ..exact import fraction_array, to_fraction

__all__ = [
    "LinearProgram",
    "naive_program",
    "optimise",
    "scheme_additions",
    "to_fraction_matrix",
]

Term = Tuple[Fraction, str]
Combination = Tuple[Term, ...]
Step = Tuple[str, Combination]


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def to_fraction_matrix(M: Any) -> np.ndarray:
    """``M`` as a 2-D numpy object array of ``Fraction`` (the exact core's number policy)."""
    arr = fraction_array(M)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {arr.shape}")
    return arr


def _matrix_key(M: np.ndarray) -> Tuple[Tuple[Fraction, ...], ...]:
    return tuple(tuple(row) for row in M.tolist())


def _fmt_coef(c: Fraction) -> str:
    return str(c) if c.denominator == 1 else f"({c})"


def _fmt_comb(terms: Combination) -> str:
    if not terms:
        return "0"
    parts: List[str] = []
    for k, (c, name) in enumerate(terms):
        sign = "-" if c < 0 else "+"
        a = -c if c < 0 else c
        body = name if a == 1 else f"{_fmt_coef(a)}*{name}"
        if k == 0:
            parts.append(body if sign == "+" else f"-{body}")
        else:
            parts.append(f" {sign} {body}")
    return "".join(parts)


# ----------------------------------------------------------------------------
# data model
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LinearProgram:
    """A straight-line program computing a rational linear map.

    ``inputs``  : names of the input values.
    ``steps``   : ``(name, ((coef, src), ...))``; each step defines a new value
                  ``name = Σ coef·src`` over inputs and earlier steps
                  (temporaries are named ``t0, t1, ...``).
    ``outputs`` : ``(name, ((coef, src), ...))``; each output is a combination
                  of inputs/steps.  An empty combination is the zero output.

    Output names live in their own namespace: they cannot be referenced by
    steps or other outputs.
    """

    inputs: Tuple[str, ...]
    steps: Tuple[Step, ...]
    outputs: Tuple[Step, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(
            self, "steps", tuple((n, _norm_comb(t)) for n, t in self.steps))
        object.__setattr__(
            self, "outputs", tuple((n, _norm_comb(t)) for n, t in self.outputs))
        defined = set()
        for name in self.inputs:
            if name in defined:
                raise ValueError(f"duplicate input name {name!r}")
            defined.add(name)
        for name, terms in self.steps:
            for _, src in terms:
                if src not in defined:
                    raise ValueError(f"step {name!r} uses undefined value {src!r}")
            if name in defined:
                raise ValueError(f"value {name!r} defined twice")
            defined.add(name)
        seen_out = set()
        for name, terms in self.outputs:
            if name in seen_out:
                raise ValueError(f"duplicate output name {name!r}")
            seen_out.add(name)
            for _, src in terms:
                if src not in defined:
                    raise ValueError(f"output {name!r} uses undefined value {src!r}")

    # -- costs ---------------------------------------------------------------

    @property
    def additions(self) -> int:
        """Binary additions/subtractions: Σ (terms − 1) over steps and outputs."""
        return sum(max(len(t) - 1, 0) for _, t in self.steps + self.outputs)

    @property
    def scalings(self) -> int:
        """Multiplications by a constant not in {1, −1}."""
        return sum(1 for _, t in self.steps + self.outputs
                   for c, _ in t if c != 1 and c != -1)

    @property
    def input_names(self) -> Tuple[str, ...]:
        return self.inputs

    @property
    def output_names(self) -> Tuple[str, ...]:
        return tuple(n for n, _ in self.outputs)

    # -- semantics -----------------------------------------------------------

    def evaluate(self, values: Any) -> Tuple[Any, ...]:
        """Evaluate on ``values`` (a mapping name → value, or a sequence in
        input order).  Returns the outputs as a tuple, in output order.

        ints are promoted to ``Fraction`` so the result is exact; other value
        types (Fraction, SymPy expressions, numpy arrays, ...) are used as is.
        """
        if isinstance(values, Mapping):
            env = {n: values[n] for n in self.inputs}
        else:
            vals = list(values)
            if len(vals) != len(self.inputs):
                raise ValueError(
                    f"expected {len(self.inputs)} values, got {len(vals)}")
            env = dict(zip(self.inputs, vals))
        for k, v in env.items():
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                env[k] = Fraction(int(v))

        def comb(terms: Combination) -> Any:
            acc: Any = Fraction(0)
            first = True
            for c, src in terms:
                v = env[src]
                term = v if c == 1 else (-v if c == -1 else c * v)
                if first:
                    acc, first = term, False
                else:
                    acc = acc + term
            return acc

        for name, terms in self.steps:
            env[name] = comb(terms)
        return tuple(comb(terms) for _, terms in self.outputs)

    def matrix(self) -> np.ndarray:
        """The n_out × n_in ``Fraction`` matrix (numpy object array) computed."""
        idx = {n: i for i, n in enumerate(self.inputs)}
        env: Dict[str, Dict[int, Fraction]] = {n: {i: Fraction(1)} for n, i in idx.items()}

        def comb(terms: Combination) -> Dict[int, Fraction]:
            acc: Dict[int, Fraction] = {}
            for c, src in terms:
                for j, a in env[src].items():
                    acc[j] = acc.get(j, Fraction(0)) + c * a
            return acc

        for name, terms in self.steps:
            env[name] = comb(terms)
        out = np.empty((len(self.outputs), len(self.inputs)), dtype=object)
        out[...] = Fraction(0)
        for r, (_, terms) in enumerate(self.outputs):
            for j, a in comb(terms).items():
                out[r, j] = a
        return out

    # -- presentation --------------------------------------------------------

    def to_text(self) -> str:
        """Human-readable listing, one assignment per line."""
        lines = [f"{n} = {_fmt_comb(t)}" for n, t in self.steps]
        lines += [f"{n} = {_fmt_comb(t)}" for n, t in self.outputs]
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.to_text()


def _norm_comb(terms: Sequence[Tuple[Any, str]]) -> Combination:
    out = []
    for c, src in terms:
        c = to_fraction(c)
        if c == 0:
            raise ValueError("zero coefficient in a combination")
        out.append((c, str(src)))
    return tuple(out)


# ----------------------------------------------------------------------------
# naive program
# ----------------------------------------------------------------------------

def _check_names(M: np.ndarray, input_names: Sequence[str],
                 output_names: Sequence[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    inp = tuple(str(n) for n in input_names)
    outp = tuple(str(n) for n in output_names)
    n_out, n_in = M.shape
    if len(inp) != n_in:
        raise ValueError(f"{len(inp)} input names for {n_in} columns")
    if len(outp) != n_out:
        raise ValueError(f"{len(outp)} output names for {n_out} rows")
    return inp, outp


def naive_program(M: Any, input_names: Sequence[str],
                  output_names: Sequence[str]) -> LinearProgram:
    """One output per row of ``M``, no sharing: row i costs nnz(i) − 1 additions."""
    M = to_fraction_matrix(M)
    inp, outp = _check_names(M, input_names, output_names)
    outputs = []
    for i, name in enumerate(outp):
        terms = tuple((M[i, j], inp[j]) for j in range(M.shape[1]) if M[i, j] != 0)
        outputs.append((name, terms))
    return LinearProgram(inp, (), tuple(outputs))


# ----------------------------------------------------------------------------
# greedy Paar-style CSE over the rationals
# ----------------------------------------------------------------------------

# A pair key (u, v, p, q) with u < v identifies the subexpression u + (p/q)·v
# up to a scalar: row terms c·u + c·(p/q)·v match it with λ = c.
PairKey = Tuple[int, int, int, int]
# temp definition: (u, cu, v, cv) meaning t = cu·u + cv·v
TempDef = Tuple[int, Fraction, int, Fraction]
# chooser(candidates, near_candidates) -> chosen key
Chooser = Callable[[List[PairKey], List[PairKey]], PairKey]


class _Trace:
    """Decision recorder used for the exhaustive tie-breaking enumeration."""

    def __init__(self, prefix: Sequence[int]):
        self.prefix = list(prefix)
        self.pos = 0
        self.branching: List[int] = []
        self.choices: List[int] = []

    def __call__(self, cands: List[PairKey], _near: List[PairKey]) -> PairKey:
        k = self.prefix[self.pos] if self.pos < len(self.prefix) else 0
        self.pos += 1
        self.branching.append(len(cands))
        self.choices.append(k)
        return cands[k]


def _unit_cost(c: Fraction) -> int:
    return 0 if c == 1 or c == -1 else 1


def _ratio(a: Fraction, b: Fraction) -> Tuple[int, int]:
    """b / a as a normalised integer pair (p, q), q > 0 (fast hashable key)."""
    n = b.numerator * a.denominator
    d = b.denominator * a.numerator
    if d < 0:
        n, d = -n, -d
    g = gcd(n, d)
    return n // g, d // g


def _initial_pairs(rows: List[Dict[int, Fraction]]) -> Dict[PairKey, set]:
    pairs: Dict[PairKey, set] = {}
    for i, row in enumerate(rows):
        vs = sorted(row)
        for a in range(len(vs)):
            u = vs[a]
            cu = row[u]
            for b in range(a + 1, len(vs)):
                v = vs[b]
                key = (u, v) + _ratio(cu, row[v])
                s = pairs.get(key)
                if s is None:
                    pairs[key] = {i}
                else:
                    s.add(i)
    return pairs


def _greedy(rows0: List[Dict[int, Fraction]], pairs0: Dict[PairKey, set], n_in: int,
            choose: Chooser) -> Tuple[List[TempDef], List[Dict[int, Fraction]], int]:
    """One greedy CSE run.  Returns (temp definitions, final rows, work done)."""
    rows = [dict(r) for r in rows0]
    pairs = {k: set(s) for k, s in pairs0.items()}
    work = len(pairs)

    temps: List[TempDef] = []
    while pairs:
        best = 0
        for s in pairs.values():
            if len(s) > best:
                best = len(s)
        work += len(pairs)
        if best < 2:
            break
        cands = sorted(k for k, s in pairs.items() if len(s) == best)
        near = cands
        if best > 2:
            near = sorted(k for k, s in pairs.items() if len(s) >= best - 1)
        key = choose(cands, near)
        u, v, p, q = key
        ratio = Fraction(p, q)
        occ = sorted(pairs[key])
        t = n_in + len(temps)

        # scale the temporary, t = lam·(u + ratio·v), to minimise non-±1 factors
        cus = [rows[i][u] for i in occ]
        lam_cands = sorted({abs(c) for c in cus} | {Fraction(1), abs(1 / ratio)},
                           key=lambda x: (x != 1, x))
        lam = min(lam_cands, key=lambda L: (
            _unit_cost(L) + _unit_cost(L * ratio)
            + sum(_unit_cost(c / L) for c in cus)))
        temps.append((u, lam, v, lam * ratio))

        for i in occ:
            row = rows[i]
            cu = row[u]
            cv = row[v]
            for w, cw in row.items():
                if w == u or w == v:
                    continue
                for x, cx in ((u, cu), (v, cv)):
                    k2 = (x, w) + _ratio(cx, cw) if x < w else (w, x) + _ratio(cw, cx)
                    s = pairs[k2]
                    s.discard(i)
                    if not s:
                        del pairs[k2]
            s = pairs[key]
            s.discard(i)
            if not s:
                del pairs[key]
            del row[u]
            del row[v]
            ct = cu / lam
            for w, cw in row.items():
                k2 = (w, t) + _ratio(cw, ct)  # w < t always
                s = pairs.get(k2)
                if s is None:
                    pairs[k2] = {i}
                else:
                    s.add(i)
            row[t] = ct
            work += 2 * len(row)
    return temps, rows, work


def _build_program(temps: List[TempDef], rows: List[Dict[int, Fraction]],
                   inp: Tuple[str, ...], outp: Tuple[str, ...]) -> LinearProgram:
    prefix = "t"
    pat = re.compile(r"\d+")
    while any(n.startswith(prefix) and pat.fullmatch(n[len(prefix):]) for n in inp):
        prefix = "_" + prefix
    n_in = len(inp)
    names = list(inp) + [f"{prefix}{k}" for k in range(len(temps))]
    steps = []
    for k, (u, cu, v, cv) in enumerate(temps):
        steps.append((names[n_in + k], ((cu, names[u]), (cv, names[v]))))
    outputs = []
    for name, row in zip(outp, rows):
        outputs.append((name, tuple((row[j], names[j]) for j in sorted(row))))
    return LinearProgram(inp, tuple(steps), tuple(outputs))


def _cost(p: LinearProgram) -> Tuple[int, int]:
    return (p.additions, p.scalings)


def optimise(M: Any, input_names: Sequence[str], output_names: Sequence[str], *,
             seed: int = 0, exhaustive_budget: int = 64, random_runs: int = 32,
             work_budget: int = 400_000) -> LinearProgram:
    """Return a program computing ``M·x`` with few additions.

    Greedy Paar-style CSE over Q: repeatedly take the scaled pair
    ``c1·a + c2·b`` that occurs (up to a common factor λ) in the most rows,
    introduce a temporary for it and substitute, until no pair occurs twice.

    Tie-breaking, since Paar's greedy is order-sensitive:

    1. the tree of ties among the most frequent pairs is enumerated
       depth-first, at most ``exhaustive_budget`` complete greedy runs;
    2. if that does not exhaust the tree, up to ``random_runs`` more runs use
       ``random.Random(seed)``: even runs pick uniformly among the most frequent
       pairs, odd runs among pairs within one occurrence of the maximum.

    Both phases stop early once ``work_budget`` abstract work units (pair-table
    updates and scans; a deterministic proxy for time) are spent; the first run
    always completes.  The best program by (additions, scalings) wins, earliest
    first, so the result is deterministic for given ``M``, names and ``seed``.
    The naive program is also a candidate, so the result never has more
    additions than it.  Temporaries are named ``t0, t1, ...`` (prefixed with
    underscores if that would clash with an input name).

    The result is verified: ``program.matrix() == M`` exactly.
    """
    M = to_fraction_matrix(M)
    inp, outp = _check_names(M, input_names, output_names)
    n_out, n_in = M.shape
    rows0 = [{j: M[i, j] for j in range(n_in) if M[i, j] != 0} for i in range(n_out)]
    pairs0 = _initial_pairs(rows0)

    best = naive_program(M, inp, outp)
    best_cost = _cost(best)
    work_total = 0

    def run(chooser: Chooser) -> None:
        nonlocal best, best_cost, work_total
        temps, rows, work = _greedy(rows0, pairs0, n_in, chooser)
        work_total += work
        prog = _build_program(temps, rows, inp, outp)
        c = _cost(prog)
        if c < best_cost:
            best, best_cost = prog, c

    # 1. exhaustive enumeration of the tie-breaking tree (odometer over choices)
    prefix: List[int] = []
    complete = False
    for n_run in range(max(exhaustive_budget, 1)):
        if n_run and work_total >= work_budget:
            break
        tr = _Trace(prefix)
        run(tr)
        ch, br = tr.choices, tr.branching
        k = len(ch) - 1
        while k >= 0 and ch[k] + 1 >= br[k]:
            k -= 1
        if k < 0:
            complete = True
            break
        prefix = ch[:k] + [ch[k] + 1]

    # 2. seeded randomised tie-breaking
    if not complete:
        rng = random.Random(seed)

        def pick_max(c: List[PairKey], n: List[PairKey]) -> PairKey:
            return c[rng.randrange(len(c))]

        def pick_near(c: List[PairKey], n: List[PairKey]) -> PairKey:
            return n[rng.randrange(len(n))]

        for n_run in range(random_runs):
            if work_total >= work_budget:
                break
            run(pick_max if n_run % 2 == 0 else pick_near)

    got = best.matrix()
    assert _matrix_key(got) == _matrix_key(M), "optimised program does not compute M"
    return best


# ----------------------------------------------------------------------------
# schemes
# ----------------------------------------------------------------------------

def scheme_additions(U: Any, V: Any, W: Any, *, seed: int = 0) -> Dict[str, Any]:
    """Optimised programs and addition counts for the three maps of a scheme.

    ``U, V, W`` are r×d.  Names: weight map x0.. → a0..; activation map
    y0.. → b0..; post-map (matrix Wᵀ, d×r) m0.. → z0...

    Returns ``{"weight": prog_U, "activation": prog_V, "post": prog_W,
    "naive": {"weight": n, "activation": n, "post": n},
    "optimised": {"weight": n, "activation": n, "post": n}}``.
    """
    U = to_fraction_matrix(U)
    V = to_fraction_matrix(V)
    W = to_fraction_matrix(W)
    if not (U.shape == V.shape == W.shape):
        raise ValueError(f"U, V, W shapes differ: {U.shape}, {V.shape}, {W.shape}")
    r, d = U.shape
    xs = [f"x{i}" for i in range(d)]
    ys = [f"y{i}" for i in range(d)]
    a_s = [f"a{s}" for s in range(r)]
    b_s = [f"b{s}" for s in range(r)]
    ms = [f"m{s}" for s in range(r)]
    zs = [f"z{k}" for k in range(d)]
    WT = W.T.copy()

    maps = {
        "weight": (U, xs, a_s),
        "activation": (V, ys, b_s),
        "post": (WT, ms, zs),
    }
    result: Dict[str, Any] = {}
    naive: Dict[str, int] = {}
    opt: Dict[str, int] = {}
    for key, (Mat, i_names, o_names) in maps.items():
        prog = optimise(Mat, i_names, o_names, seed=seed)
        result[key] = prog
        naive[key] = naive_program(Mat, i_names, o_names).additions
        opt[key] = prog.additions
    result["naive"] = naive
    result["optimised"] = opt
    return result
