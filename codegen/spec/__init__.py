"""The declarative spec API imported by files in `algebra_spec/`.

    from codegen.spec import algebra, from_matrices, matrix_algebra, tensor, basis_change

Every constructor validates its input at once and raises `SpecError` naming the spec file, the algebra and the
problem; the result is an immutable `Algebra` with the exact structure tensor.  `discover` imports a spec folder.
"""
from .algebra import CLAIM_NAMES, Algebra
from .constructors import algebra, basis_change, complex_numbers, from_matrices, matrix_algebra, tensor
from .errors import BuildError, SpecError

__all__ = ["Algebra", "CLAIM_NAMES", "BuildError", "SpecError", "algebra", "basis_change", "complex_numbers",
           "from_matrices", "matrix_algebra", "tensor"]
