"""The manifest of one built algebra, `generated/<Name>/manifest.json`: the fields the build writes and the
runtime reads, exact numbers as text, sparse tensors, the fold plan and the scheme (docs/design.md, "Manifest
fields").  Standard library and NumPy only.

Exact numbers are written as canonical text ('3', '-1/2'); `dense(entries, shape, number)` reads sparse
entries `[i, j, ..., "p/q"]` back as exact Fractions (number=Fraction, an object array; the build and tests) or
float64 (number=float; the runtime, which rounds each exact value once).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

__all__ = ["MANIFEST_NAME", "DIGEST_FIELD", "content_digest", "fraction_str", "sparse", "dense", "numbers", "FoldPlan", "scheme_matrices"]

#: the file name of an algebra's manifest (in generated/<Name>/) and of the index (in generated/)
MANIFEST_NAME = "manifest.json"

#: the manifest's own digest: SHA-256 of its other fields (`content_digest`), so an edit of its exact data (a
#: structure constant, a scheme coefficient, the fold plan) makes it stale like an edit of a generated file
DIGEST_FIELD = "manifest_digest"

Number = Callable[[Fraction], object]


def content_digest(manifest: dict) -> str:
    """SHA-256 of the manifest's fields other than DIGEST_FIELD, as the build writes them (sorted keys, indent 1):
    the build stores it in the manifest; the runtime recomputes it from the parsed file."""
    rest = {k: v for k, v in manifest.items() if k != DIGEST_FIELD}
    return hashlib.sha256((json.dumps(rest, indent=1, sort_keys=True) + "\n").encode()).hexdigest()


def fraction_str(v: Fraction) -> str:
    """Canonical text for an exact number: '3', '-1/2'."""
    v = Fraction(v)
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def _value(text, number: Number):
    return number(Fraction(text)) if number is not Fraction else Fraction(text)


def _array(shape: tuple[int, ...], number: Number) -> np.ndarray:
    if number is Fraction:
        out = np.empty(shape, dtype=object)
        out[...] = Fraction(0)
        return out
    return np.zeros(shape, dtype=np.float64)


def sparse(array: np.ndarray) -> list[list]:
    """The non-zero entries of an exact array as [i, j, ..., "p/q"] (row-major order)."""
    return [[*(int(i) for i in idx), fraction_str(array[idx])] for idx in np.ndindex(*array.shape) if array[idx] != 0]


def dense(entries, shape: tuple[int, ...], number: Number = Fraction) -> np.ndarray:
    """Inverse of `sparse`: entries [[i, j, ..., "p/q"], ...] -> an array of `shape` (Fractions or float64)."""
    out = _array(shape, number)
    for *idx, v in entries:
        out[tuple(int(i) for i in idx)] = _value(v, number)
    return out


def numbers(values, number: Number = Fraction) -> np.ndarray:
    """A list of exact texts -> a 1-D array (Fractions or float64)."""
    out = _array((len(values),), number)
    for i, v in enumerate(values):
        out[i] = _value(v, number)
    return out


def scheme_matrices(entry: dict, d: int, number: Number = Fraction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scheme's U, V, W ((rank, d) each) from the manifest's "scheme" entry (rows of exact texts)."""
    return tuple(np.array([numbers(r, number) for r in entry[k]]).reshape(-1, d) for k in ("U", "V", "W"))


@dataclass(frozen=True)
class FoldPlan:
    """How a weight-left layer folds (found exactly by the build, `codegen.exact.fold`; read by the runtime).

    m, p: number of identical blocks of the left-regular representation and their size (m * p = d; m == 1:
    no folding).  perm: (d,) basis index of block c, position s at perm[c*p + s].  block: (d, p, p),
    B(w)[t, s] = sum_a block[a, t, s] w_a.  view_shape, view_axes, split: when not None, perm ==
    arange(d).reshape(view_shape).transpose(view_axes).ravel() and the first `split` reordered axes multiply
    to m (the block index), the rest to p, so folding is one permute-copy rather than a gather.
    change_in, change_out: None, or the (d, d) matrices F, G of a fold through a basis change (an algebra
    M_n(R) (x) D in a basis no permutation folds): each activation element x becomes F x before folding and each
    folded output element y becomes G y after unfolding (the block already includes the change of the weight).
    Entries are Fractions in the build and float64 in the runtime.
    """

    m: int
    p: int
    perm: tuple[int, ...]
    block: np.ndarray
    view_shape: tuple[int, ...] | None
    view_axes: tuple[int, ...] | None
    split: int | None
    change_in: np.ndarray | None = None
    change_out: np.ndarray | None = None

    @property
    def folds(self) -> bool:
        return self.m > 1

    def to_json(self) -> dict:
        """Manifest form: the block as sparse exact entries [a, t, s, "value"]; null when m == 1 (the block is
        then the whole block-expansion tensor, i.e. the structure tensor transposed, which the manifest holds).
        "change": null, or {"in": F, "out": G} as sparse exact entries [row, col, "value"]."""
        view = None if self.view_shape is None else {"shape": list(self.view_shape), "axes": list(self.view_axes),
                                                     "split": self.split}
        change = None
        if self.change_in is not None:
            change = {"in": sparse(self.change_in), "out": sparse(self.change_out)}
        return {"m": self.m, "p": self.p, "perm": list(self.perm), "view": view,
                "block": sparse(self.block) if self.m > 1 else None, "change": change}

    @classmethod
    def identity(cls, structure: np.ndarray):
        """The one-block plan: the block is the whole block-expansion tensor (structure transposed)."""
        d = structure.shape[0]
        return cls(1, d, tuple(range(d)), np.ascontiguousarray(structure.transpose(0, 2, 1)), None, None, None)

    @classmethod
    def from_json(cls, entry: dict, structure: np.ndarray, number: Number = Fraction):
        """Inverse of `to_json`, given the structure tensor (d, d, d) in the same number type."""
        if entry["m"] == 1:
            return cls.identity(structure)
        d, p = structure.shape[0], int(entry["p"])
        view = entry.get("view")
        change = entry.get("change")
        return cls(int(entry["m"]), p, tuple(int(i) for i in entry["perm"]), dense(entry["block"], (d, p, p), number),
                   None if view is None else tuple(view["shape"]), None if view is None else tuple(view["axes"]),
                   None if view is None else int(view["split"]),
                   None if change is None else dense(change["in"], (d, d), number),
                   None if change is None else dense(change["out"], (d, d), number))
