"""AlgebraNets runtime: load generated algebras and use them in torch code.

    from runtime import load_algebra
    H = load_algebra("H")
    z = H.mul(x, y)            # (..., 4) x (..., 4) -> (..., 4)

    layer = runtime.layers.AlgebraLinear(64, 64, algebra=runtime.learned(4))   # a learned (PHM) algebra

Layers live in `runtime.layers`; learned algebras in `runtime.learned_algebra`.  The runtime never imports SymPy.
"""
from .learned_algebra import learned
from .registry import Algebra, AlgebraNotBuiltError, available_algebras, clear_cache, load_algebra

__all__ = ["Algebra", "AlgebraNotBuiltError", "available_algebras", "clear_cache", "learned", "load_algebra"]
