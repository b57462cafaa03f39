"""Hamilton's quaternions, basis (1, i, j, k) with i^2 = j^2 = k^2 = ijk = -1."""
from codegen.spec import algebra

# Howell-Lafon type 8-multiplication scheme (docs/schemes.md); the factor 1/2 of
# s = (t5 + t6 + t7 + t8)/2 is moved onto the weight side (U), where it costs nothing at run time.
H = algebra(
    "H", basis=["1", "i", "j", "k"], unit="1", title="quaternions",
    products={"i*i": "-1", "j*j": "-1", "k*k": "-1",
              "i*j": "k", "j*i": "-k", "j*k": "i", "k*j": "-i", "k*i": "j", "i*k": "-j"},
    claims={"associative": True, "commutative": False, "unital": True, "alternative": True},
    scheme=dict(
        U=[[0, 0, -1, 1], [1, 1, 0, 0], [1, -1, 0, 0], [0, 0, 1, 1],
           ["0", "-1/2", "0", "1/2"], ["0", "1/2", "0", "1/2"], ["1/2", "0", "1/2", "0"], ["1/2", "0", "-1/2", "0"]],
        V=[[0, 0, 1, -1], [1, 1, 0, 0], [0, 0, 1, 1], [1, -1, 0, 0],
           [0, 1, -1, 0], [0, 1, 1, 0], [1, 0, 0, -1], [1, 0, 0, 1]],
        W=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
           [1, 1, 1, 1], [-1, -1, 1, 1], [1, -1, 1, -1], [1, -1, -1, 1]]),
)
