"""The declarative spec API imported by files in `algebra_spec/`.

    from codegen.spec import algebra, from_matrices, matrix_algebra, tensor

    C = algebra("C", basis=["1", "i"], products={"i*i": "-1"}, unit="1",
                claims={"associative": True, "commutative": True}, title="complex numbers")

Every constructor validates its input at once and raises `SpecError` naming the spec file (the caller's
file), the algebra and the problem. The result is an immutable `AlgebraSpec` holding the exact structure
tensor T (numpy object array of Fraction, shape (d, d, d), `(x*y)_k = sum_ij T[i,j,k] x_i y_j`).
"""
from __future__ import annotations

import keyword
import os
import sys
import unicodedata
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np
import sympy
from sympy.parsing.sympy_parser import parse_expr, standard_transformations

from .. import exact
from .algebra import CLAIM_NAMES, AlgebraSpec
from .errors import SpecError

_CODEGEN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_file() -> str | None:
    """The first file on the stack outside codegen: the spec file that called us."""
    frame = sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(_CODEGEN_DIR + os.sep):
            return fname
        frame = frame.f_back
    return None


# --------------------------------------------------------------------------------------------- checks

MAX_NAME_LENGTH = 64
MAX_TITLE_LENGTH = 200


def _check_name(name: Any, file: str | None) -> str:
    """A name is a Python identifier (any script; it names a folder, a module and, spelled in ASCII, kernels)."""
    if not isinstance(name, str):
        raise SpecError(f"algebra name must be a string, got {type(name).__name__} {name!r}", file=file)
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SpecError(f"algebra name {name!r} is not a Python identifier (letters, digits and underscores, not "
                        f"starting with a digit, not a keyword)", file=file)
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError(f"algebra name is {len(name)} characters long; use at most {MAX_NAME_LENGTH}",
                        algebra=name[:MAX_NAME_LENGTH] + "...", file=file)
    return name


def _check_title(title: Any, name: str, file: str | None) -> str:
    """A title is one line of printable text (it is written into comments and docstrings of generated files)."""
    if not isinstance(title, str):
        raise SpecError(f"title must be a string, got {type(title).__name__}", algebra=name, file=file)
    bad = next((c for c in title if not c.isprintable()), None)
    if bad is not None:
        raise SpecError(f"title {title!r} contains the non-printable character {bad!r} (e.g. a line break); a title "
                        f"is one line of text", algebra=name, file=file)
    if len(title) > MAX_TITLE_LENGTH:
        raise SpecError(f"title is {len(title)} characters long; use at most {MAX_TITLE_LENGTH}", algebra=name,
                        file=file)
    return title


def _check_basis(basis: Any, name: str, file: str | None, unit: str | None) -> tuple[str, ...]:
    if isinstance(basis, str) or not isinstance(basis, Sequence) or len(basis) == 0:
        raise SpecError("basis must be a non-empty list of names", algebra=name, file=file)
    seen = set()
    for b in basis:
        if not isinstance(b, str):
            raise SpecError(f"basis names must be strings, got {type(b).__name__} {b!r}", algebra=name, file=file)
        if not (b.isidentifier() or (b == "1" and unit == "1")):
            raise SpecError(f"basis name {b!r} is not an identifier (only the unit may be called '1')",
                            algebra=name, file=file)
        if unicodedata.normalize("NFKC", b) != b:      # Python (and so SymPy's parser) reads identifiers as NFKC
            raise SpecError(f"basis name {b!r} is read by Python as {unicodedata.normalize('NFKC', b)!r}; write "
                            f"it that way", algebra=name, file=file)
        if b in seen:
            raise SpecError(f"duplicate basis name {b!r}", algebra=name, file=file)
        seen.add(b)
    return tuple(basis)


def _check_claims(claims: Any, name: str, file: str | None) -> dict[str, bool]:
    if claims is None:
        return {}
    if not isinstance(claims, Mapping):
        raise SpecError(f"claims must be a dict, got {type(claims).__name__}", algebra=name, file=file)
    out = {}
    for k, v in claims.items():
        if k not in CLAIM_NAMES:
            raise SpecError(f"unknown claim {k!r}; known claims: {', '.join(CLAIM_NAMES)}", algebra=name, file=file)
        if not isinstance(v, bool):
            raise SpecError(f"claim {k!r} must be True or False, got {v!r}", algebra=name, file=file)
        out[k] = v
    return out


def _exact_number(v: Any, what: str, name: str, file: str | None) -> Fraction:
    """Parse a coefficient (int, Fraction, SymPy Rational, or a string such as '-1/2') exactly."""
    if isinstance(v, bool):
        raise SpecError(f"{what}: expected a number, got {v!r}", algebra=name, file=file)
    if isinstance(v, float):
        raise SpecError(f"{what}: non-exact coefficient {v!r} (a float); write it as a fraction such as '1/2'",
                        algebra=name, file=file)
    if isinstance(v, str):
        try:
            v = sympy.Rational(v)
        except (TypeError, ValueError, SyntaxError):
            raise SpecError(f"{what}: cannot read {v!r} as an exact rational number", algebra=name, file=file)
    if isinstance(v, sympy.Basic):
        if v.has(sympy.Float):
            raise SpecError(f"{what}: non-exact coefficient {v} (a float); use an exact rational", algebra=name,
                            file=file)
        if not v.is_number or v.is_real is False:
            raise SpecError(f"{what}: expected a real number, got {v}", algebra=name, file=file)
    try:
        return exact.to_fraction(v)
    except exact.InexactNumberError as e:
        raise SpecError(f"{what}: {e}", algebra=name, file=file) from None


def _rows(M: Any) -> list[list] | None:
    """A matrix given as a list / tuple of rows, a 2-D numpy array or a SymPy matrix -> its rows (None: not one)."""
    if isinstance(M, sympy.MatrixBase):
        return M.tolist()
    if isinstance(M, np.ndarray):
        return [list(r) for r in M] if M.ndim == 2 else None
    if isinstance(M, (list, tuple)) and all(isinstance(r, (list, tuple, np.ndarray)) for r in M):
        return [list(r) for r in M]
    return None


def _check_scheme_rank(given: tuple | None, T: np.ndarray, name: str, file: str | None) -> None:
    """A given scheme is only worth its verification if it can be used: its rank must not exceed the naive count."""
    if given is None:
        return
    rank, naive = given[0].shape[0], len(exact.nonzero_pairs(T))
    if rank > naive:
        raise SpecError(f"the scheme given in the spec has rank {rank}, more than the naive product's {naive} "
                        f"multiplications, so it would never be used; remove it or give a scheme of rank <= {naive}",
                        algebra=name, file=file)


def _parse_scheme(scheme: Any, d: int, name: str, file: str | None) -> tuple | None:
    """Spec-given scheme: dict(U=..., V=..., W=...) or (U, V, W), each r x d exact numbers."""
    if scheme is None:
        return None
    if isinstance(scheme, Mapping):
        try:
            mats = [scheme[k] for k in ("U", "V", "W")]
        except KeyError as e:
            raise SpecError(f"scheme is missing matrix {e.args[0]!r} (need U, V and W)", algebra=name, file=file)
    elif isinstance(scheme, (list, tuple)) and len(scheme) == 3:
        mats = list(scheme)
    else:
        raise SpecError("scheme must be dict(U=..., V=..., W=...) or a tuple (U, V, W)", algebra=name, file=file)
    out = []
    rank = None
    for label, M in zip("UVW", mats):
        rows = _rows(M)
        if rows is None or not all(len(r) == d for r in rows):
            raise SpecError(f"scheme matrix {label} must be r rows of length {d} (a list of rows, a 2-D numpy array "
                            f"or a sympy.Matrix), got {type(M).__name__}"
                            + (f" of shape {M.shape}" if hasattr(M, "shape") else ""), algebra=name, file=file)
        if rank is None:
            rank = len(rows)
        if len(rows) != rank:
            raise SpecError(f"scheme matrices have different numbers of rows ({rank} and {len(rows)})",
                            algebra=name, file=file)
        vals = [[_exact_number(v, f"scheme {label}[{s}][{i}]", name, file) for i, v in enumerate(r)]
                for s, r in enumerate(rows)]
        out.append(exact.fraction_array(vals) if vals else np.empty((0, d), dtype=object))
    return tuple(out)


# -------------------------------------------------------------------------------------- constructors

def _parse_key(key: Any, basis: tuple[str, ...], name: str, file: str | None) -> tuple[int, int]:
    if isinstance(key, tuple) and len(key) == 2:
        parts = list(key)
    elif isinstance(key, str):
        parts = [p.strip() for p in key.split("*")]
        if len(parts) != 2:
            raise SpecError(f"product key {key!r} must name two basis elements, like 'i*j'", algebra=name, file=file)
    else:
        raise SpecError(f"product key {key!r} must be a string 'a*b' or a pair (a, b)", algebra=name, file=file)
    idx = []
    for p in parts:
        if p not in basis:
            raise SpecError(f"product key {key!r}: unknown basis element {p!r} (basis: {', '.join(basis)})",
                            algebra=name, file=file)
        idx.append(basis.index(p))
    return idx[0], idx[1]


def _parse_value(value: Any, key: str, basis: tuple[str, ...], unit: str | None, name: str,
                 file: str | None) -> list[Fraction]:
    """A product's value -> coordinates in the basis.  Bare numbers are multiples of the unit."""
    symbols = {b: sympy.Symbol(b) for b in basis if b.isidentifier()}
    what = f"product {key}"
    if isinstance(value, float):
        raise SpecError(f"{what}: non-exact coefficient {value!r} (a float); write it as a fraction such as '1/2'",
                        algebra=name, file=file)
    if isinstance(value, str):
        try:
            expr = parse_expr(value, local_dict=dict(symbols), transformations=standard_transformations)
        except Exception as e:  # SymPy raises many types for bad strings
            raise SpecError(f"{what}: cannot parse {value!r}: {e}", algebra=name, file=file)
    elif isinstance(value, (int, Fraction, sympy.Basic)) and not isinstance(value, bool):
        expr = sympy.sympify(value)
    else:
        raise SpecError(f"{what}: value must be a string or SymPy expression, got {type(value).__name__}",
                        algebra=name, file=file)
    if not isinstance(expr, sympy.Expr):
        raise SpecError(f"{what}: {value!r} is not an expression", algebra=name, file=file)
    expr = sympy.expand(expr)
    unknown = sorted(str(s) for s in expr.free_symbols if str(s) not in symbols)
    if unknown:
        raise SpecError(f"{what} = {value!r}: unknown symbol {unknown[0]!r} (basis: {', '.join(basis)})",
                        algebra=name, file=file)
    if expr.has(sympy.Float):
        raise SpecError(f"{what} = {value!r}: non-exact coefficient (a float); use fractions such as 1/2",
                        algebra=name, file=file)
    syms = [symbols[b] for b in basis if b in symbols]
    coords = [Fraction(0)] * len(basis)
    poly = sympy.Poly(expr, *syms) if syms else None
    terms = poly.terms() if poly is not None else [((), expr)]
    for monom, coef in terms:
        if sum(monom) > 1:
            raise SpecError(f"{what} = {value!r} leaves the basis: it is not a linear combination of "
                            f"{', '.join(basis)}", algebra=name, file=file)
        if not coef.is_number or coef.is_real is False:
            raise SpecError(f"{what} = {value!r}: coefficient {coef} is not a real number", algebra=name, file=file)
        c = _exact_number(coef, f"{what} = {value!r}", name, file)
        if sum(monom) == 0:
            if c == 0:
                continue
            if unit is None:
                raise SpecError(f"{what} = {value!r} has a bare number but the algebra declares no unit",
                                algebra=name, file=file)
            coords[basis.index(unit)] += c
        else:
            sym = syms[monom.index(1)]
            coords[basis.index(str(sym))] += c
    return coords


def algebra(name: str, basis: Sequence[str], products: Mapping[Any, Any], *, unit: str | None = None,
            claims: Mapping[str, bool] | None = None, title: str = "", missing: str = "error",
            scheme: Any = None) -> AlgebraSpec:
    """Define an algebra by the products of its basis elements.

    products: {"i*j": "k", "i*i": "-1", ...}; values are SymPy-parsable strings or SymPy expressions in the
    basis symbols with exact coefficients.  Products with the declared `unit` are implied; any other product
    not listed is an error unless missing="zero".  `scheme` optionally gives a bilinear algorithm
    dict(U=..., V=..., W=...) (r x d exact numbers each) which the build verifies exactly.
    """
    file = _caller_file()
    name = _check_name(name, file)
    if unit is not None and not isinstance(unit, str):
        raise SpecError(f"unit must be the name of a basis element, got {unit!r}", algebra=name, file=file)
    basis_t = _check_basis(basis, name, file, unit)
    if unit is not None and unit not in basis_t:
        raise SpecError(f"unit {unit!r} is not a basis element (basis: {', '.join(basis_t)})", algebra=name, file=file)
    if missing not in ("error", "zero"):
        raise SpecError(f"missing must be 'error' or 'zero', got {missing!r}", algebra=name, file=file)
    if not isinstance(products, Mapping):
        raise SpecError(f"products must be a dict like {{'i*j': 'k'}}, got {type(products).__name__}",
                        algebra=name, file=file)
    title = _check_title(title, name, file)
    d = len(basis_t)
    table: dict[tuple[int, int], list[Fraction]] = {}
    for key, value in products.items():
        i, j = _parse_key(key, basis_t, name, file)
        label = f"{basis_t[i]}*{basis_t[j]}"
        if (i, j) in table:
            raise SpecError(f"product {label} is listed twice", algebra=name, file=file)
        table[(i, j)] = _parse_value(value, label, basis_t, unit, name, file)
    T = np.empty((d, d, d), dtype=object)
    T[...] = Fraction(0)
    u = basis_t.index(unit) if unit is not None else None
    for i in range(d):
        for j in range(d):
            if (i, j) in table:
                T[i, j, :] = table[(i, j)]
            elif u is not None and i == u:
                T[i, j, j] = Fraction(1)
            elif u is not None and j == u:
                T[i, j, i] = Fraction(1)
            elif missing == "zero":
                pass
            else:
                raise SpecError(f"missing product {basis_t[i]}*{basis_t[j]} (list it, or pass missing='zero')",
                                algebra=name, file=file)
    given = _parse_scheme(scheme, d, name, file)
    _check_scheme_rank(given, T, name, file)
    return AlgebraSpec(name, basis_t, T, claims=_check_claims(claims, name, file), title=title, unit_name=unit,
                   given_scheme=given, source=file)


def _matrix_vector(M: sympy.Matrix) -> list:
    """Real coordinates of a (possibly complex) matrix: (re, im) of each entry, row-major."""
    out = []
    for e in M:
        e = sympy.nsimplify(e) if isinstance(e, sympy.Float) else e
        out.extend([sympy.re(e), sympy.im(e)])
    return out


def from_matrices(name: str, matrices: Mapping[str, Any], *, claims: Mapping[str, bool] | None = None,
                  title: str = "", scheme: Any = None) -> AlgebraSpec:
    """Define an algebra as the real span of matrices closed under the matrix product.

    matrices: {basis_name: sympy.Matrix}; all the same square shape, exact entries (complex allowed).
    The structure constants express each product M_a M_b in the span; an error names the product that
    leaves the span, or the matrix that depends linearly on the others.
    """
    file = _caller_file()
    name = _check_name(name, file)
    title = _check_title(title, name, file)
    if not isinstance(matrices, Mapping) or not matrices:
        raise SpecError("matrices must be a non-empty dict {basis_name: sympy.Matrix}", algebra=name, file=file)
    basis_t = _check_basis(list(matrices), name, file, None)
    mats = []
    for b, M in matrices.items():
        if not isinstance(M, sympy.MatrixBase):
            try:
                M = sympy.Matrix(M)
            except Exception:
                raise SpecError(f"matrix {b!r} must be a sympy.Matrix, got {type(M).__name__}", algebra=name,
                                file=file)
        if M.has(sympy.Float):
            raise SpecError(f"matrix {b!r} has a non-exact entry (a float); use fractions", algebra=name, file=file)
        if M.shape != mats[0].shape if mats else not M.is_square:
            raise SpecError(f"matrix {b!r} has shape {M.shape}; all matrices must be square and of one shape",
                            algebra=name, file=file)
        mats.append(M)
    d = len(mats)
    B = sympy.Matrix([_matrix_vector(M) for M in mats]).T  # columns = basis vectors
    rank = B.rank()
    if rank < d:
        for k in range(d):
            others = B[:, :k].row_join(B[:, k + 1:]) if d > 1 else None
            if others is not None and others.rank() == rank:
                sol, params = B[:, :k].row_join(B[:, k + 1:]).gauss_jordan_solve(B[:, k])
                sol = sol.subs({p: 0 for p in params})
                names = [n for n in basis_t if n != basis_t[k]]
                combo = " + ".join(f"{c}*{n}" for c, n in zip(sol, names) if c != 0) or "0"
                raise SpecError(f"matrices are linearly dependent: {basis_t[k]} = {combo}", algebra=name, file=file)
        raise SpecError("matrices are linearly dependent", algebra=name, file=file)
    T = np.empty((d, d, d), dtype=object)
    for i in range(d):
        for j in range(d):
            target = sympy.Matrix(_matrix_vector(mats[i] * mats[j]))
            try:
                sol, params = B.gauss_jordan_solve(target)
            except ValueError:
                raise SpecError(f"product {basis_t[i]}*{basis_t[j]} leaves the span of the matrices "
                                f"(not closed under the product)", algebra=name, file=file)
            for k in range(d):
                T[i, j, k] = _exact_number(sympy.simplify(sol[k]), f"product {basis_t[i]}*{basis_t[j]}", name, file)
    given = _parse_scheme(scheme, d, name, file)
    _check_scheme_rank(given, T, name, file)
    return AlgebraSpec(name, basis_t, T, claims=_check_claims(claims, name, file), title=title, unit_name=None,
                   given_scheme=given, source=file)


def _plain_matrix_algebra(n: int, name: str, file: str | None, claims: Mapping[str, bool] | None) -> AlgebraSpec:
    basis = [f"E{r + 1}{c + 1}" if n < 10 else f"E{r + 1}_{c + 1}" for r in range(n) for c in range(n)]
    return AlgebraSpec(name, basis, exact.matrix_tensor(n), claims=_check_claims(claims, name, file),
                   title=f"{n}x{n} real matrices", unit_name=None, source=file)


def matrix_algebra(n: int, field: str = "R", *, name: str | None = None,
                   claims: Mapping[str, bool] | None = None) -> AlgebraSpec:
    """n x n matrices over R or C in the row-major matrix-unit basis (docs/design.md).

    For C the basis is (Re z11, Im z11, Re z12, ...), i.e. tensor(M_n(R), C).  For composite n = a*b the
    algebra is derived from tensor(M_a, M_b) by a basis permutation, so its scheme can be composed.
    """
    file = _caller_file()
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SpecError(f"matrix_algebra: n must be a positive integer, got {n!r}", file=file)
    if field not in ("R", "C"):
        raise SpecError(f"matrix_algebra: field must be 'R' or 'C', got {field!r}", file=file)
    name = _check_name(name or f"M{n}{field}", file)
    if field == "C":
        return tensor(matrix_algebra(n), complex_numbers(), name=name, claims=claims,
                      title=f"{n}x{n} complex matrices")
    a = next((f for f in range(2, n) if n % f == 0), None)
    if a is None:
        return _plain_matrix_algebra(n, name, file, claims)
    b = n // a
    product_alg = tensor(matrix_algebra(a), matrix_algebra(b), name=f"M{a}R_x_M{b}R")
    # E_{r1 c1} (x) E_{r2 c2}  corresponds to  E_{(r1 b + r2), (c1 b + c2)} of M_n.
    d = n * n
    P = np.empty((d, d), dtype=object)
    P[...] = Fraction(0)
    for r1 in range(a):
        for c1 in range(a):
            for r2 in range(b):
                for c2 in range(b):
                    old = (r1 * a + c1) * b * b + (r2 * b + c2)
                    new = (r1 * b + r2) * n + (c1 * b + c2)
                    P[old, new] = Fraction(1)
    plain = _plain_matrix_algebra(n, name, file, claims)
    return basis_change(product_alg, P, plain.basis, name=name, claims=claims, title=plain.title)


def complex_numbers(name: str = "C") -> AlgebraSpec:
    """C with basis (1, i)."""
    return algebra(name, ["1", "i"], {"i*i": "-1"}, unit="1", claims={"associative": True, "commutative": True},
                   title="complex numbers")


def _combined_names(A: AlgebraSpec, B: AlgebraSpec) -> list[str]:
    names = []
    for a in A.basis:
        for b in B.basis:
            if b == B.unit_name:
                names.append(a)
            elif a == A.unit_name:
                names.append(b)
            else:
                names.append(f"{a}_{b}")
    if len(set(names)) != len(names):
        names = [f"{a}_{b}" for a in A.basis for b in B.basis]
    return names


def tensor(A: AlgebraSpec, B: AlgebraSpec, *, name: str, claims: Mapping[str, bool] | None = None,
           title: str = "") -> AlgebraSpec:
    """The tensor product A (x) B in Kronecker basis order (index a*dim(B) + b).

    Its scheme is composed from the factors' schemes (rank <= rank(A) * rank(B)).
    """
    file = _caller_file()
    name = _check_name(name, file)
    title = _check_title(title, name, file)
    for X in (A, B):
        if not isinstance(X, AlgebraSpec):
            raise SpecError(f"tensor: expected AlgebraSpec factors, got {type(X).__name__}", algebra=name, file=file)
    T = np.einsum("ijk,abc->iajbkc", A.T, B.T).reshape(A.dim * B.dim, A.dim * B.dim, A.dim * B.dim)
    unit = None
    names = _combined_names(A, B)
    if A.unit_name and B.unit_name:
        unit = names[A.basis.index(A.unit_name) * B.dim + B.basis.index(B.unit_name)]
    return AlgebraSpec(name, names, T, claims=_check_claims(claims, name, file),
                   title=title or f"{A.name} tensor {B.name}", unit_name=unit, derivation=("tensor", A, B),
                   source=file)


def basis_change(A: AlgebraSpec, P: Any, basis: Sequence[str], *, name: str, claims: Mapping[str, bool] | None = None,
                 title: str = "") -> AlgebraSpec:
    """A in a new basis: column a of P holds new basis vector a in A's coordinates (P invertible, exact)."""
    file = _caller_file()
    name = _check_name(name, file)
    title = _check_title(title, name, file)
    if not isinstance(A, AlgebraSpec):
        raise SpecError(f"basis_change: expected an AlgebraSpec, got {type(A).__name__}", algebra=name, file=file)
    try:
        P = exact.fraction_array(P)
    except exact.InexactNumberError as e:
        raise SpecError(f"basis change matrix: {e}", algebra=name, file=file) from None
    if P.shape != (A.dim, A.dim):
        raise SpecError(f"basis change matrix must be {A.dim}x{A.dim}, got {P.shape}", algebra=name, file=file)
    try:
        T = exact.change_basis(A.T, P)
    except ValueError:
        raise SpecError("basis change matrix is singular", algebra=name, file=file)
    if isinstance(basis, str) or not isinstance(basis, Sequence) or len(basis) != A.dim:
        raise SpecError(f"need a list of {A.dim} basis names, got {basis!r}", algebra=name, file=file)
    unit_name = _unit_basis_name(T, basis)
    basis_t = _check_basis(list(basis), name, file, unit_name)
    return AlgebraSpec(name, basis_t, T, claims=_check_claims(claims, name, file), title=title or A.title,
                   unit_name=unit_name, derivation=("basis_change", A, P), source=file)


def _unit_basis_name(T: np.ndarray, basis: Sequence) -> str | None:
    """The name of the basis element that is the two-sided unit, if one is."""
    u = exact.unit(T)
    if u is None or sum(1 for v in u if v) != 1:
        return None
    k = next(i for i, v in enumerate(u) if v)
    return basis[k] if u[k] == 1 else None


def derived(name: str, basis: Sequence[str], T: np.ndarray, *, derivation: tuple | None,
            claims: Mapping[str, bool] | None = None, title: str = "") -> AlgebraSpec:
    """The common last step of the builders (`codegen.spec.builders`): check the name, basis names and claims
    and return the AlgebraSpec with its derivation.  The unit is named when it is a basis element."""
    file = _caller_file()
    name = _check_name(name, file)
    unit_name = _unit_basis_name(T, basis) if not isinstance(basis, str) and len(basis) == T.shape[0] else None
    basis_t = _check_basis(basis, name, file, unit_name)
    if len(basis_t) != T.shape[0]:
        raise SpecError(f"need {T.shape[0]} basis names, got {len(basis_t)}", algebra=name, file=file)
    return AlgebraSpec(name, basis_t, T, claims=_check_claims(claims, name, file), title=title, unit_name=unit_name,
                   derivation=derivation, source=file)
