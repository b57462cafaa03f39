"""How an algebra layer is computed: the method table (`table`), the method in force (`state`), auto's cost
model (`cost`), the torch paths (`block`: block and fold, `bilinear`, `complex`: torch's complex GEMM / conv
where the algebra is complex) with their autograd Functions (`fold_fn`, `bilinear_fn`), the conv geometry they
take (`geometry`), the scratch pool of those Functions (`workspace`) and the cache of expanded weights
(`weight_cache`).  The generated kernels are runtime.kernels.
"""
from .geometry import ConvGeometry
from .state import default_method, force_method, get_default_method, requested, set_default_method
from .table import (AUTO_CANDIDATES, COUNTED, METHODS, TABLE, LayerShape, Method, applies, check, choose_cached,
                    choose_method, get, macs_per_pair, method_costs)

__all__ = ["ConvGeometry", "default_method", "force_method", "get_default_method", "requested",
           "set_default_method", "AUTO_CANDIDATES", "COUNTED", "METHODS", "TABLE", "LayerShape", "Method", "applies", "check",
           "choose_cached", "choose_method", "get", "macs_per_pair", "method_costs"]
