"""The declarative spec API imported by files in `algebra_spec/`.

    from codegen.spec import algebra, from_matrices, matrix_algebra, tensor, basis_change
    from codegen.spec import clifford, group_algebra, cayley_dickson, opposite, direct_sum, extension
    from codegen.spec import random_structure

Every constructor validates its input at once and raises `SpecError` naming the spec file, the algebra and the
problem; the result is an immutable `AlgebraSpec` with the exact structure tensor.  `discover` imports a spec folder.
"""
from .algebra import CLAIM_NAMES, AlgebraSpec
from .builders import cayley_dickson, clifford, direct_sum, extension, group_algebra, opposite
from .constructors import algebra, basis_change, complex_numbers, from_matrices, matrix_algebra, tensor
from .errors import BuildError, SpecError
from .controls import random_structure

__all__ = ["AlgebraSpec", "CLAIM_NAMES", "BuildError", "SpecError", "algebra", "basis_change", "cayley_dickson",
           "clifford", "complex_numbers", "direct_sum", "extension", "from_matrices", "group_algebra",
           "matrix_algebra", "opposite", "random_structure", "tensor"]
