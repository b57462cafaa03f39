"""The cross product on R^3 (the Lie algebra so(3)): e1 x e2 = e3 cyclically, anticommutative."""
from codegen.spec import algebra

# Optimal 5-multiplication scheme with +-1 coefficients (Krishna-Makam; docs/schemes.md).
Cross3 = algebra(
    "Cross3", basis=["e1", "e2", "e3"], title="cross product on R^3",
    products={"e1*e1": "0", "e2*e2": "0", "e3*e3": "0",
              "e1*e2": "e3", "e2*e1": "-e3", "e2*e3": "e1", "e3*e2": "-e1", "e3*e1": "e2", "e1*e3": "-e2"},
    claims={"associative": False, "anticommutative": True, "jacobi": True, "unital": False},
    scheme=dict(U=[[0, 1, -1], [1, -1, 1], [0, 0, 1], [1, -1, 0], [1, 0, 0]],
                V=[[1, -1, 0], [0, 1, 0], [1, 0, 0], [0, 1, -1], [0, 0, 1]],
                W=[[0, 0, -1], [-1, 0, 1], [0, 1, -1], [1, 0, 0], [1, -1, 0]]),
)
