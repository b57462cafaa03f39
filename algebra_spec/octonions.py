"""The octonions: the Cayley-Dickson double of the quaternions H (algebra_spec/quaternions.py), with l^2 = -1.

Basis (1, i, j, k, l, il, jl, kl): H's basis, then each b l named b + "l" (the unit's copy is l itself), and

    (a + b l)(c + d l) = (a c - conj(d) b) + (d a + b conj(c)) l        for a, b, c, d in H,

conj fixing 1 and negating i, j, k.  So i, j, k multiply as in H, l^2 = -1, and e.g. i l = il, l i = -il,
(il) j = -kl.  Alternative, not associative, no zero divisors.  The builder's own scheme is four products of H
(4 x 8 = 32); the build uses the lower-rank scheme stored in schemes/O.json (found by `python -m codegen search
O`, docs/schemes.md), verified exactly at every build.
"""
from codegen.spec import cayley_dickson

from .quaternions import H

O = cayley_dickson(H, name="O", generator="l", title="octonions",
                   claims={"associative": False, "commutative": False, "unital": True, "alternative": True})
