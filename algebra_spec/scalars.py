"""Two-dimensional-or-less commutative algebras: the reals, the complex numbers and the dual numbers."""
from codegen.spec import algebra

R = algebra("R", basis=["1"], products={}, unit="1", title="real numbers",
            claims={"associative": True, "commutative": True, "unital": True, "alternative": True})

# Gauss's 3-multiplication product in weight-left form (docs/schemes.md):
# m1 = a(c+d), m2 = (b-a)c, m3 = (a+b)d; Re = m1 - m3, Im = m1 + m2.
C = algebra("C", basis=["1", "i"], products={"i*i": "-1"}, unit="1", title="complex numbers",
            claims={"associative": True, "commutative": True, "unital": True, "alternative": True},
            scheme=dict(U=[[1, 0], [-1, 1], [1, 1]],
                        V=[[1, 1], [1, 0], [0, 1]],
                        W=[[1, 1], [0, 1], [-1, 0]]))

Dual = algebra("Dual", basis=["1", "eps"], products={"eps*eps": "0"}, unit="1", title="dual numbers",
               claims={"associative": True, "commutative": True, "unital": True})
