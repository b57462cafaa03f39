"""The contract between `python -m codegen build` and the runtime: where built algebras live (`locations`), the
digests that tell a current build from a stale one (`digest`), and the manifest's fields with their exact text
form, the fold plan and the scheme (`manifest`).

Standard library and NumPy only: the runtime imports this package (never SymPy); `codegen/__init__.py` imports
nothing, so `import codegen.contract` stays light.
"""
