"""Scheme search (`python -m codegen search`): Wedderburn split, flip-graph walks over GF(p), Hensel lifting,
ALS with rounding, proven lower bounds.  Works on `codegen.schemes.Scheme`; every result is verified exactly.
Not part of the build: editing it never makes generated code stale."""
from .driver import find_scheme

__all__ = ["find_scheme"]
