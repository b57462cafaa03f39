"""Emitters: addition-minimised linear maps, straight-line formulas, CUDA kernels, templates, and the build
digest.  Import-light on purpose: the runtime imports `codegen.emit.digest` without SymPy."""
