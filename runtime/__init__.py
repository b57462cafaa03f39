"""AlgebraNets runtime: load generated algebras and use them in torch code.

    from runtime import load_algebra
    H = load_algebra("H")
    z = H.mul(x, y)            # (..., 4) x (..., 4) -> (..., 4)

Layers live in `runtime.layers`.  The runtime never imports SymPy.
"""
from .registry import Algebra, AlgebraNotBuiltError, available_algebras, clear_cache, load_algebra

__all__ = ["Algebra", "AlgebraNotBuiltError", "available_algebras", "clear_cache", "load_algebra"]
