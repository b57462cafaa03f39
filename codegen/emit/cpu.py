"""Context for the CPU template: per-algebra straight-line code and the CPU kernel table.

`context(T, scheme, name)` returns what `kernels_cpu.cpp.j2` renders into `generated/<Name>/<Name>_cpu.cpp` and
the table written to `generated/<Name>/cpu_kernels.json`, which the runtime (`runtime.kernels.cpu`) reads.  Everything
here is exact and deterministic.

The kernels compute y[b, o] = sum_i w[o, i] * x[b, i] (+ bias[o]) with the weight the left factor, for a dense
compact weight (out, in, d) or an element-sparse one (block-CSR, one algebra element per block), in two ways:

* ``small`` (few batch rows): vector lanes run along the weight's memory, so every weight byte is loaded
  once and used by `patterns` multiply-adds per batch row.  The activation is first expanded into
  `patterns` copies: in copy p, component a of element i holds sum_j T[a, j, k] x_ij with k = kmap[p][a]
  (the p-th output component that weight component a feeds).  Then out_k = sum over (p, a) with
  kmap[p][a] = k of sum_i w_ia * xp[p]_ia: a plain multiply-add stream over the weight, one horizontal
  reduction per output row.  `patterns` = the largest number of outputs one weight component feeds, so
  the multiply-adds per element pair are patterns * d (= the nonzero count k for every built-in algebra
  but Dual, where it is 4 against 3).
* ``lanes`` (larger batches): batch rows run along the vector lanes; per weight element the d components
  are broadcast and either the naive multiply-adds (one per nonzero structure constant) or the scheme
  (a = U w by its addition-minimised program, r multiply-adds with the pre-computed V x, the W post-map
  once per output row) accumulate into registers.  The runtime picks naive or scheme by their counts.
* ``planar`` (a packed weight, runtime.packing): the weight repacked once component-major in blocks of the
  target's vector lanes, so each nonzero T[a, j, k] is one multiply-add of whole vectors of elements
  (`planar_mac`, in weight-major order; the template keeps the outputs of the pass in progress, see `slot`).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..schemes import Scheme
from .formulas import c_identifier, combination, mac_lines, program_lines, programs

#: version of the C ABI between the generated kernels and runtime/kernels/cpu/glue.cpp
ABI = 2
#: storage suffix -> C++ type
STORAGE = {"f32": "float", "f64": "double"}


def patterns(T: np.ndarray) -> list[list[int]]:
    """kmap[p][a]: the p-th output component that weight component a feeds (-1: none).

    Weight component a feeds output k when T[a, j, k] != 0 for some j; the outputs of each a are listed in
    increasing k, so the number of patterns is the largest number of outputs one component feeds.
    """
    d = T.shape[0]
    feeds = [[k for k in range(d) if any(T[a, j, k] != 0 for j in range(d))] for a in range(d)]
    P = max(1, max(len(f) for f in feeds))
    return [[feeds[a][p] if p < len(feeds[a]) else -1 for a in range(d)] for p in range(P)]


def expansion(T: np.ndarray, kmap: list[list[int]]) -> list[tuple[int, int, str]]:
    """(p, a, expr): pattern copy p, component a = sum_j T[a, j, kmap[p][a]] x_j (C++ text, inputs x0..)."""
    d = T.shape[0]
    out = []
    for p, row in enumerate(kmap):
        for a, k in enumerate(row):
            terms = [(Fraction(T[a, j, k]), f"x{j}") for j in range(d)] if k >= 0 else []
            out.append((p, a, combination(terms, "cu")))
    return out


def planar_mac(T: np.ndarray) -> list[str]:
    """The planar kernel's multiply-adds, weight component by weight component, the components that meet the same
    input components next to each other (for a matrix algebra: w_rm for every r, then the next m), so the input
    vectors stay in registers while the weights stream past them."""
    d = T.shape[0]
    support = [tuple(j for j in range(d) if np.any(T[a, j, :] != 0)) for a in range(d)]
    return mac_lines(T, acc="slot<{k}, K0, K1>(acc[r][b], sink)", w="vload(w + {i} * VL)", x="vload(x + {j} * VL)",
                     weight_major=True, order=sorted(range(d), key=lambda a: (support[a], a)))


def _pow2_ceil(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def context(T: np.ndarray, scheme: Scheme, name: str) -> dict:
    d, r = scheme.dim, scheme.rank
    prefix = c_identifier(name)
    kmap = patterns(T)
    progs = programs(scheme)
    dp = _pow2_ceil(d)
    naive = int(sum(1 for c in T.flat if c != 0))
    table = {
        "algebra": name, "abi": ABI, "dim": d, "rank": r, "patterns": len(kmap), "naive_multiplications": naive,
        "weight_additions": progs["weight"].additions, "source": f"{name}_cpu.cpp",
        "storages": list(STORAGE),
        "variants": {"small": 0, "lanes_naive": 1, "lanes_scheme": 2, "planar": 3},
        "entry_points": {"abi": f"{prefix}_cpu_abi",
                         **{f"{kind}_{s}": f"{prefix}_cpu_{kind}_{s}" for s in STORAGE
                            for kind in ("variant", "work", "prep", "rows", "packed_size", "pack")}},
    }
    return {
        "prefix": prefix, "kmap": kmap, "patterns": len(kmap), "expansion": expansion(T, kmap),
        "repeat": {sl: [lane % dp for lane in range(sl)] for sl in (2, 4, 8, 16, 32, 64)},
        "mac": mac_lines(T, acc="acc[r][{k}][v]", w="rows_splat<T, H>(wr + {i} * CS, rs)",
                         x="vload(xe + ({j} * VB + v) * VL)", weight_major=True),
        "planar_mac": planar_mac(T),
        "weight_map": program_lines(progs["weight"], "cu"),
        "activation_map": program_lines(progs["activation"], "cu"),
        "post_map": program_lines(progs["post"], "cu"),
        "weight_additions": progs["weight"].additions, "naive": naive, "abi": ABI, "storages": STORAGE,
        "kernel_table": table,
    }
