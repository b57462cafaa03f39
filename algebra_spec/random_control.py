"""Random-structure controls: RandH and RandM4R, NOT algebras anyone should use for their own sake.

Each is a seeded random structure tensor (`codegen.spec.random_structure`) with exactly as many nonzero
constants as the algebra it stands in for, all +-1 like that algebra's: RandH (dimension 4) has H's 16 and
RandM4R (dimension 16) has M4R's 64.  A layer over one couples each element's components by a fixed bilinear
map that has no algebraic law, so an experiment that runs H (M4R) and RandH (RandM4R) side by side tells "any
fixed coupling of the components" apart from "this particular algebra".

How they are drawn (all from `random.Random(seed)`, integers only, so every build gives the same tensors): the
nonzero cells uniformly among the d^3 cells of T[i, j, k] without repetition, each sign +1 or -1 with
probability 1/2; a draw is kept only if the left and right multiplication matrices L(w), R(w) of a random
integer element w both have full rank, checked exactly over Q (det L(w) is a polynomial in w, so full rank at one
point means a generic element's L and R are nonsingular: the layer is not degenerate), otherwise the next draw from
the same generator is taken.  Properties (associativity, units, ...) are computed and refuted by the build like
any other algebra's, so no claims are given; the scheme is the naive one (one multiplication per constant) unless
the build finds a better one.
"""
from codegen.spec import random_structure

from .matrices import M4R
from .quaternions import H

RandH = random_structure(H.dim, int((H.T != 0).sum()), seed=0, name="RandH",
                         title="random control for H: 16 constants +-1")
RandM4R = random_structure(M4R.dim, int((M4R.T != 0).sum()), seed=0, name="RandM4R",
                           title="random control for M4R: 64 constants +-1")
