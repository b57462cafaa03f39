"""Context for the CUDA templates: per-algebra straight-line code and the kernel table.

`context(T, scheme, name)` returns what `kernels.cu.j2` renders into `generated/<Name>/<Name>.cu` and the
kernel table written to `generated/<Name>/kernels.json`, which the runtime (`runtime.kernels.cuda`) reads to know
which kernels exist and how to launch them.  Everything here is exact and deterministic.

Kernels emitted per algebra (S = storage: f32, f16, bf16, plus f64 for the elementwise product;
arithmetic is float32, or float64 for f64):

* ``<N>_mul_fwd_<S>``, ``<N>_mul_bwd_<S>``          elementwise product and its two gradients (grid-stride)
* ``<N>_premap_<P>_<S>``, ``<N>_postmap_<P>_<S>``   the scheme's linear maps, P in U, V, W, as single passes:
  premap (n, d) -> (r, n) planar with o_s = sum_j P[s, j] x_j; postmap (r, n) -> (n, d) with
  z_j = sum_s P[s, j] m_s (+ bias).  V premap and W postmap are the bilinear forward; the others are
  its backward (premap_P and postmap_P are adjoint).
* ``<N>_gemv_<S>_b<B>``                             y = W * x for up to B batch rows, compact weights
* ``<N>_bsr_<S>_b<B>``                              element-sparse (block-CSR) weights x dense activations
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .additions import optimise
from .formulas import c_identifier, combination, mac_lines, program_lines, rename
from ..schemes import Scheme

#: storage suffix -> C++ storage type, accumulation type, bytes
STORAGE = {
    "f32": ("float", "float", 4),
    "f64": ("double", "double", 8),
    "f16": ("an_half", "float", 2),
    "bf16": ("an_bfloat", "float", 2),
}
#: storages for the elementwise and map kernels, and for the gemv / block-sparse kernels
ELEMENTWISE_STORAGE = ("f32", "f64", "f16", "bf16")
MAP_STORAGE = ("f32", "f16", "bf16")
MATRIX_STORAGE = ("f32", "f16", "bf16")
#: batch tiles of the gemv / block-sparse kernels; a tile B is emitted when B*d <= MAX_ACC registers
TILES = (1, 2, 4, 8, 16)
MAX_ACC = 64
#: threads per block of every kernel; gemv/bsr use BLOCK // 32 warps per block
BLOCK = 256
#: largest group (bytes) one lane loads at once in gemv; groups are whole elements and 16-byte multiples
MAX_GROUP_BYTES = 144


def _naive_contraction(T: np.ndarray, out_axis: int, a_axis: int, b_axis: int, a: str, b: str, out: str):
    """out_o = sum T[...] a_p b_q with (o, p, q) on the given axes of T: list of (target, expr)."""
    d = T.shape[0]
    lines = []
    for o in range(d):
        terms = []
        for p in range(d):
            for q in range(d):
                idx = [0, 0, 0]
                idx[out_axis], idx[a_axis], idx[b_axis] = o, p, q
                c = T[tuple(idx)]
                if c != 0:
                    terms.append((Fraction(c), f"{a}{p}*{b}{q}"))
        lines.append((f"{out}{o}", combination(terms, "cu")))
    return lines


def group_elements(d: int, nbytes: int) -> int:
    """Elements per gemv lane group: the fewest whole elements filling a multiple of 16 bytes (1 if too big)."""
    from math import gcd
    g = 16 // gcd(16, d * nbytes)
    return g if g * d * nbytes <= MAX_GROUP_BYTES else 1


def tiles(d: int) -> list[int]:
    return [b for b in TILES if b * d <= MAX_ACC]


def context(T: np.ndarray, scheme: Scheme, name: str) -> dict:
    d, r = scheme.dim, scheme.rank
    prefix = c_identifier(name)
    xs, ms = [f"x{i}" for i in range(d)], [f"m{s}" for s in range(r)]
    os_, zs = [f"o{s}" for s in range(r)], [f"z{k}" for k in range(d)]
    maps = {}
    for P, M in (("U", scheme.U), ("V", scheme.V), ("W", scheme.W)):
        pre = rename(optimise(M, xs, os_), "p")
        post = rename(optimise(M.T, ms, zs), "q")
        maps[P] = {"pre": program_lines(pre, "cu"), "post": program_lines(post, "cu"),
                   "pre_additions": pre.additions, "post_additions": post.additions}
    # gradients of z = x*y: gx_i = sum_jk T[i,j,k] y_j g_k, gy_j = sum_ik T[i,j,k] x_i g_k
    grad_left = _naive_contraction(T, 0, 1, 2, "y", "g", "z")
    grad_right = _naive_contraction(T, 1, 0, 2, "x", "g", "z")
    storages = {s: {"type": STORAGE[s][0], "acc": STORAGE[s][1], "bytes": STORAGE[s][2]} for s in STORAGE}
    groups = {s: group_elements(d, STORAGE[s][2]) for s in MATRIX_STORAGE}
    kernels = []

    def add(kind, storage, params, **extra):
        suffix = f"_b{extra['tile']}" if "tile" in extra else ""
        kname = {"mul_fwd": f"{prefix}_mul_fwd_{storage}", "mul_bwd": f"{prefix}_mul_bwd_{storage}",
                 "premap": f"{prefix}_premap_{extra.get('map')}_{storage}",
                 "postmap": f"{prefix}_postmap_{extra.get('map')}_{storage}",
                 "gemv": f"{prefix}_gemv_{storage}{suffix}", "bsr": f"{prefix}_bsr_{storage}{suffix}"}[kind]
        kernels.append({"name": kname, "kind": kind, "storage": storage, "params": params, **extra})

    for s in ELEMENTWISE_STORAGE:
        add("mul_fwd", s, ["ptr x", "ptr y", "ptr z", "i64 n"])
        add("mul_bwd", s, ["ptr x", "ptr y", "ptr gz", "ptr gx", "ptr gy", "i64 n"])
        for P in ("UVW" if s in MAP_STORAGE else ""):
            add("premap", s, ["ptr x", "ptr out", "i64 n"], map=P)
            add("postmap", s, ["ptr m", "ptr bias", "ptr z", "i64 n", "i64 nbias"], map=P)
    for s in MATRIX_STORAGE:
        for b in tiles(d):
            add("gemv", s, ["ptr w", "ptr x", "ptr bias", "ptr y", "i64 out", "i64 in", "i64 batch", "i64 splits"],
                tile=b, group=groups[s])
        for b in tiles(d):
            add("bsr", s, ["ptr crow", "ptr col", "ptr values", "ptr x", "ptr bias", "ptr y", "i64 out", "i64 in",
                           "i64 batch"], tile=b)
    table = {"algebra": name, "prefix": prefix, "dim": d, "rank": r, "source": f"{name}.cu", "block": BLOCK,
             "elementwise_storage": list(ELEMENTWISE_STORAGE), "map_storage": list(MAP_STORAGE),
             "matrix_storage": list(MATRIX_STORAGE),
             "tiles": tiles(d), "groups": groups,
             "map_additions": {P: {"pre": maps[P]["pre_additions"], "post": maps[P]["post_additions"]}
                               for P in "UVW"},
             "host_build": {"define": "ALGEBRANETS_HOST_SHIM", "suffix": "_host"},
             "kernels": kernels}
    return {"prefix": prefix, "maps": maps, "grad_left": grad_left, "grad_right": grad_right, "mac": mac_lines(T),
            "storages": storages, "elementwise_storage": ELEMENTWISE_STORAGE, "map_storage": MAP_STORAGE,
            "matrix_storage": MATRIX_STORAGE,
            "tiles": tiles(d), "groups": groups, "block": BLOCK, "warps": BLOCK // 32, "kernels": kernels,
            "kernel_table": table}
