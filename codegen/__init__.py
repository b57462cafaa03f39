"""AlgebraNets code generator: exact algebra specs -> checks -> bilinear schemes -> generated code.

Kept import-light on purpose: `runtime` imports `codegen.digest` to detect stale builds without SymPy.
"""
__version__ = "0.1.0"
