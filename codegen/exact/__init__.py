"""The exact core: one number policy (Fraction only), exact linear algebra, structure-tensor operations,
property checks, the Wedderburn structure of associative algebras and the fold plan of a layer.

Everything here is exact (Fraction arithmetic on numpy object arrays); nothing is decided by floats.
"""
from .linalg import Echelon, inverse, nullspace, rank, rref, solve, span_basis
from .numbers import (InexactNumberError, content, fraction_array, fraction_str, identity, integer_form,
                      primitive_integer, to_fraction, zeros)
from .tensors import (basis_vector, centre, change_basis, is_associative, is_zero_tensor, left_regular, matrix_tensor,
                      nonzero_pairs, product, right_regular, unit)

__all__ = ["Echelon", "inverse", "nullspace", "rank", "rref", "solve", "span_basis", "InexactNumberError",
           "content", "fraction_array", "fraction_str", "identity", "integer_form", "primitive_integer",
           "to_fraction", "zeros", "basis_vector", "centre", "change_basis", "is_associative", "is_zero_tensor", "left_regular",
           "matrix_tensor", "nonzero_pairs", "product", "right_regular", "unit"]
