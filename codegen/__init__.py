"""AlgebraNets code generator.  The pipeline, one subpackage per stage:

    spec/     the declarative API of algebra_spec/*.py (constructors, discovery, errors)
    exact/    the exact core: Fraction-only numbers, linear algebra, tensors, properties, Wedderburn, fold plan
    schemes/  the Scheme type (verify, naive, compose, change of basis, direct sum, JSON) and the resolver
    contract/ the manifest contract with the runtime: locations, digests, manifest fields (no SymPy)
    emit/     addition-minimised maps, formulas, CUDA and CPU kernel contexts, templates
    build.py  the driver: discover -> check -> resolve schemes -> fold plan -> render -> write atomically
    search/   `python -m codegen search`: flip graphs, Hensel lifting, ALS (not part of the build)
    cli.py    `python -m codegen build | list | show | check | search`

Kept import-light on purpose: `runtime` imports `codegen.contract` (locations, digests, the manifest) without
SymPy.
"""
__version__ = "0.1.0"
