"""The exact core: one number policy (Fraction only), exact linear algebra, structure-tensor operations,
property checks, the Wedderburn structure of associative algebras and the fold plan of a layer.

Everything here is exact (Fraction arithmetic on numpy object arrays); nothing is decided by floats.
"""
from .linalg import Echelon, inverse, nullspace, rank, rref, solve, span_basis
from .numbers import (InexactNumberError, UnrepresentableNumberError, content, exact_dot, fraction_array, fraction_str,
                      identity, integer_form, primitive_integer, require_representable, to_fraction, zeros)
from .tensors import (basis_vector, cayley_dickson_tensor, centre, change_basis, direct_sum_tensor, extension_tensor,
                      is_associative, is_zero_tensor, left_regular, matrix_tensor, nonzero_pairs, opposite_tensor,
                      power_tensor, product, quaternion_tensor, right_regular, tensor_key, tensor_product, unit)

__all__ = ["Echelon", "inverse", "nullspace", "rank", "rref", "solve", "span_basis", "InexactNumberError",
           "UnrepresentableNumberError", "require_representable",
           "content", "exact_dot", "fraction_array", "fraction_str", "identity", "integer_form", "primitive_integer",
           "to_fraction", "zeros", "basis_vector", "centre", "change_basis", "is_associative", "is_zero_tensor", "left_regular",
           "matrix_tensor", "nonzero_pairs", "product", "right_regular", "unit", "tensor_product", "direct_sum_tensor",
           "opposite_tensor", "cayley_dickson_tensor", "extension_tensor", "quaternion_tensor", "power_tensor",
           "tensor_key"]
