"""Algebra specifications.  Every module here is imported by `python -m codegen build`, and every
module-level `AlgebraSpec` is built under its name.  Add your own module here, or keep your specs in a
folder of your own and pass `--spec-dir`.  Import sibling specs relatively (`from .scalars import C`)."""
