"""Emitters: addition-minimised linear maps, straight-line formulas, CUDA and CPU kernel contexts, templates."""
