"""Straight-line formulas for an algebra's product, printed for Python (torch) and C++ (CUDA).

The naive product is z_k = sum_ij T[i,j,k] x_i y_j.  The scheme product is
a = U x (weight side), b = V y (activation side), m_s = a_s b_s, z = W^T m, each linear map as an
addition-minimised `LinearProgram`.  Both are emitted as lists of (target, expression) assignments.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from ..exact.numbers import require_representable
from .additions import LinearProgram, naive_program, optimise
from ..schemes import Scheme


#: integers up to this magnitude are exact in float32 and float64, so they (and ratios of them) print as they are
EXACT_INT = 2 ** 24


def literal(c: Fraction, lang: str) -> str:
    """An exact constant as source text for the kernels' arithmetic type T (float or double; "py": a Python float
    used by torch); lang "text" keeps 1/3.

    Integers and dyadic fractions whose numerator and denominator fit in 24 bits are exact in float32 and float64
    ("3.0", "T(3)", "T(0.375)"); other fractions of such integers print as a quotient of literals, which is then one
    correctly rounded division in T.  Every other constant (large integers, large numerators or denominators)
    prints as its correctly rounded float64 value ("T(1e+20)"), rounded once more to float32 where T is float,
    as torch rounds a Python float.  A constant outside float32's normal range raises
    UnrepresentableNumberError (the build checks every coefficient before emitting, so this is the last guard)."""
    if lang == "text":
        return str(c)
    c = require_representable(c)
    small = abs(c.numerator) <= EXACT_INT and c.denominator <= EXACT_INT
    if not small:
        text = repr(float(c))                      # float(Fraction) rounds correctly
        return text if lang == "py" else f"T({text})"
    if c.denominator == 1:
        return f"{c.numerator}.0" if lang == "py" else f"T({c.numerator})"
    dyadic = (c.denominator & (c.denominator - 1)) == 0
    if dyadic:
        text = repr(float(c))
        return text if lang == "py" else f"T({text})"
    return f"({c.numerator}.0 / {c.denominator}.0)" if lang == "py" else f"(T({c.numerator}) / T({c.denominator}))"


def combination(terms: Sequence[tuple[Fraction, str]], lang: str) -> str:
    """sum c*name as source text: 'x0 - x1 + 0.5*x2'; '0' when empty."""
    out = ""
    for c, name in terms:
        if c == 0:
            continue
        mag = abs(c)
        term = name if mag == 1 else f"{literal(mag, lang)}*{name}"
        if not out:
            out = f"-{term}" if c < 0 else term
        else:
            out += f" - {term}" if c < 0 else f" + {term}"
    return out or ("0.0" if lang == "py" else "T(0)")


@dataclass(frozen=True)
class Formulas:
    """Assignments for both products per language ("py", "cu"); x0.., y0.. are inputs, z0.. outputs."""

    naive: dict[str, tuple[tuple[str, str], ...]]
    scheme: dict[str, tuple[tuple[str, str], ...]]
    additions: dict  # {"naive"|"optimised": {"weight"|"activation"|"post": count}}


def _naive_lines(T: np.ndarray, lang: str) -> list[tuple[str, str]]:
    d = T.shape[0]
    lines = []
    for k in range(d):
        terms = []
        for i in range(d):
            for j in range(d):
                c = T[i, j, k]
                if c != 0:
                    terms.append((c, f"x{i}*y{j}"))
        lines.append((f"z{k}", combination(terms, lang)))
    return lines


def rename(prog: LinearProgram, prefix: str) -> LinearProgram:
    """Give a program's temporaries a prefix so several programs can share one scope."""
    mapping = {name: f"{prefix}{name}" for name, _ in prog.steps}
    ren = (lambda terms: tuple((c, mapping.get(n, n)) for c, n in terms))
    return LinearProgram(inputs=prog.inputs,
                         steps=tuple((mapping[n], ren(t)) for n, t in prog.steps),
                         outputs=tuple((n, ren(t)) for n, t in prog.outputs))


def program_lines(prog: LinearProgram, lang: str) -> list[tuple[str, str]]:
    """A program as (target, expression) assignments: its steps, then its outputs."""
    return [(n, combination(t, lang)) for n, t in prog.steps] + [(n, combination(t, lang)) for n, t in prog.outputs]


def mac_lines(T: np.ndarray, acc: str = "acc[{k}]", w: str = "w[{i}]", x: str = "x[{j}]",
              lang: str = "cu", weight_major: bool = False, order: Sequence[int] | None = None) -> list[str]:
    """acc_k += c * w_i * x_j, one statement per nonzero structure constant T[i,j,k] = c (each becomes one
    multiply-add).  acc, w, x: format strings for the accumulator, weight and activation components.
    Ordered by output k, or with weight_major by weight component i (each w_i is used in one run); `order`: the
    order of those outputs or weight components (default 0 .. d-1)."""
    d = T.shape[0]
    out = []
    for first in (range(d) if order is None else order):
        for second in range(d):
            k, i = (second, first) if weight_major else (first, second)
            for j in range(d):
                c = Fraction(T[i, j, k])
                if c == 0:
                    continue
                a, wi, xj = acc.format(k=k), w.format(i=i), x.format(j=j)
                if c == 1:
                    out.append(f"{a} += {wi} * {xj};")
                elif c == -1:
                    out.append(f"{a} -= {wi} * {xj};")
                else:
                    out.append(f"{a} += ({literal(c, lang)} * {wi}) * {xj};")
    return out


def programs(scheme: Scheme) -> dict[str, LinearProgram]:
    """Addition-minimised programs for the weight map (U), activation map (V) and post map (W^T).  Made once per
    scheme content (the torch, CUDA and CPU emitters all ask; the search is the build's costliest step)."""
    key = tuple(tuple(map(tuple, M)) for M in (scheme.U, scheme.V, scheme.W))
    hit = _programs.get(key)
    if hit is None:
        hit = _programs[key] = _programs_of(scheme)
    return hit


_programs: dict[tuple, dict[str, LinearProgram]] = {}


def _programs_of(scheme: Scheme) -> dict[str, LinearProgram]:
    d, r = scheme.dim, scheme.rank
    xs, ys = [f"x{i}" for i in range(d)], [f"y{i}" for i in range(d)]
    a, b = [f"a{s}" for s in range(r)], [f"b{s}" for s in range(r)]
    ms, zs = [f"m{s}" for s in range(r)], [f"z{k}" for k in range(d)]
    return {
        "weight": rename(optimise(scheme.U, xs, a), "u"),
        "activation": rename(optimise(scheme.V, ys, b), "v"),
        "post": rename(optimise(scheme.W.T, ms, zs), "w"),
    }


def build(T: np.ndarray, scheme: Scheme, langs: Sequence[str] = ("py", "cu")) -> Formulas:
    """Naive and scheme formulas for each language, plus the addition counts."""
    progs = programs(scheme)
    naive, sch = {}, {}
    for lang in langs:
        lines = program_lines(progs["weight"], lang) + program_lines(progs["activation"], lang)
        lines += [(f"m{s}", f"a{s}*b{s}") for s in range(scheme.rank)]
        lines += program_lines(progs["post"], lang)
        sch[lang] = tuple(lines)
        naive[lang] = tuple(_naive_lines(T, lang))
    d, r = scheme.dim, scheme.rank
    xs, ms = [f"x{i}" for i in range(d)], [f"m{s}" for s in range(r)]
    outs, zs = [f"o{s}" for s in range(r)], [f"z{k}" for k in range(d)]
    adds = {"optimised": {k: p.additions for k, p in progs.items()},
            "naive": {"weight": naive_program(scheme.U, xs, outs).additions,
                      "activation": naive_program(scheme.V, xs, outs).additions,
                      "post": naive_program(scheme.W.T, ms, zs).additions}}
    return Formulas(naive=naive, scheme=sch, additions=adds)


def c_identifier(name: str) -> str:
    """The algebra's name as the C/C++/CUDA identifier prefix of its kernels: the name itself when it is ASCII (a
    Python identifier is then [A-Za-z_][A-Za-z0-9_]*), else an ASCII spelling of it (nvcc refuses universal
    characters in device entity names)."""
    if name.isascii():
        return name
    return "an_" + "".join(c if c.isascii() else f"_u{ord(c):x}_" for c in name)
