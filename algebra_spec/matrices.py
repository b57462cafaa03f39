"""Real and complex matrix algebras in the row-major matrix-unit basis (docs/design.md).

M4R is derived by the builder from M2R (x) M2R with an exact basis permutation, so its scheme is the
composed 7 x 7 = 49; M2C = M2R (x) C gets 7 x 3 = 21.  M3R's rank-23 scheme is found by
`python -m codegen search M3R` and stored in schemes/M3R.json.
"""
from codegen.spec import algebra, matrix_algebra, tensor

from .scalars import C

_MATRIX_CLAIMS = {"associative": True, "commutative": False, "unital": True, "alternative": True}

# Winograd's variant of Strassen (docs/schemes.md): 7 multiplications, 15 additions after CSE.
_WINOGRAD = dict(
    U=[[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, -1, -1], [0, 0, 0, 1], [0, 0, 1, 1], [-1, 0, 1, 1], [1, 0, -1, 0]],
    V=[[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, -1, -1, 1], [-1, 1, 0, 0], [1, -1, 0, 1], [0, -1, 0, 1]],
    W=[[1, 1, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 0], [0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 1, 1]],
)

M2R = algebra("M2R", basis=["E11", "E12", "E21", "E22"], title="2x2 real matrices",
              products={f"E{a}{b}*E{c}{e}": (f"E{a}{e}" if b == c else "0")
                        for a in (1, 2) for b in (1, 2) for c in (1, 2) for e in (1, 2)},
              claims=_MATRIX_CLAIMS, scheme=_WINOGRAD)
M3R = matrix_algebra(3, name="M3R", claims=_MATRIX_CLAIMS)
M4R = matrix_algebra(4, name="M4R", claims=_MATRIX_CLAIMS)
M2C = tensor(M2R, C, name="M2C", claims=_MATRIX_CLAIMS, title="2x2 complex matrices")
