"""Bilinear schemes: the `Scheme` type (exact verify, naive, compose, change of basis, direct sum, JSON I/O) and
`SchemeResolver`, which picks the best verified scheme for each algebra of a build."""
from .resolve import SchemeResolver
from .scheme import (Scheme, cayley_dickson, change_basis, compose_tensor, direct_sum, extension, from_json,
                     load_file, naive, opposite, save_file, weight_side_constants)

__all__ = ["Scheme", "SchemeResolver", "cayley_dickson", "change_basis", "compose_tensor", "direct_sum", "extension",
           "from_json", "load_file", "naive", "opposite", "save_file", "weight_side_constants"]
