"""Load generated algebras: `load_algebra("H")` -> `Algebra` with constants, scheme and torch products.

The runtime reads `<folder>/<Name>/manifest.json` through the manifest contract (`codegen.contract`: locations,
digests, fields; no SymPy) and imports the generated `ops.py` by path.  The one call into the build (which
imports SymPy) is `_build_builtin`: an installed package builds a built-in algebra into the user cache on first
use.  A missing, stale or damaged build raises `AlgebraNotBuiltError` naming the
file and the command that fixes it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from codegen.contract import digest, locations
from codegen.contract import manifest as contract
from codegen.contract.manifest import MANIFEST_NAME

from .checks import require_real_floating

ENV_VAR = locations.GENERATED_ENV


class AlgebraNotBuiltError(RuntimeError):
    """The algebra is not in the generated folder, or its generated code is out of date or damaged."""


def default_generated_dir() -> Path:
    """$ALGEBRANETS_GENERATED, else the built-in algebras' folder (a checkout's generated/ or the user cache)."""
    return locations.default_generated_dir()


@dataclass(frozen=True)
class SchemeData:
    """A verified bilinear scheme as float64 arrays: T[i,j,k] = sum_s U[s,i] V[s,j] W[s,k].

    U, V, W: (rank, dim).  U acts on the left factor (the weight in layers).
    additions: {"naive"|"optimised": {"weight"|"activation"|"post": count}}.
    """

    U: np.ndarray
    V: np.ndarray
    W: np.ndarray
    provenance: str
    additions: dict
    unusual_coefficients: tuple[str, ...]

    @property
    def rank(self) -> int:
        return int(self.U.shape[0])


@dataclass(frozen=True)
class FoldPlan(contract.FoldPlan):
    """The build's fold plan (codegen.contract.manifest.FoldPlan: m, p, perm, block, view, change) with float64
    entries, and its change matrices as tensors, made once per dtype and device."""

    matrices: dict = field(default_factory=dict, compare=False, repr=False)   # (which, dtype, device) -> tensor

    @property
    def plain(self) -> "FoldPlan":
        """The same plan without its basis change (the permutation part only)."""
        hit = self.matrices.get("plain")
        if hit is None:
            hit = self.matrices["plain"] = replace(self, change_in=None, change_out=None, matrices={})
        return hit

    def matrix(self, which: str, dtype: torch.dtype, device, folded: bool = False) -> torch.Tensor:
        """The change matrix as a tensor: "in" (F), "out" (G), "in_T" (F transposed), "out_T" (G transposed);
        made from the float64 values once per dtype and device.  folded=True composes it with the permutation:
        the rows of a matrix applied on the way in ("in", "out_T") or the columns of one applied on the way out
        ("out", "in_T") are then in folded order (index c*p + s is basis index perm[c*p + s])."""
        key = (which, dtype, torch.device(device), folded)
        hit = self.matrices.get(key)
        if hit is None:
            M = self.change_in if which.startswith("in") else self.change_out
            M = M.T if which.endswith("_T") else M
            if folded:
                M = M[list(self.perm)] if which in ("in", "out_T") else M[:, list(self.perm)]
            hit = torch.as_tensor(np.ascontiguousarray(M), dtype=dtype, device=device)
            if _cacheable(hit):
                self.matrices[key] = hit
        return hit


def _cacheable(t: torch.Tensor) -> bool:
    """Only plain tensors are kept: one made while torch.export / torch.onnx.export traces is a FakeTensor,
    which would poison every later call (eager results from fake storage, the next export's constants)."""
    return type(t) is torch.Tensor


@dataclass
class AlgebraCache:
    """Per-algebra data derived at run time, made on first use and kept with the Algebra.

    tensors: (name, dtype, device) -> constant tensor ("T", "U", "V", "W", "block", "fold").
    methods: the `auto` method chosen per layer shape.  variance_profile: relative weight-component variances
    (runtime.init).  op_key, kernel_table: the algebra's name in the CUDA ops and its generated kernel table
    (runtime.kernels.cuda).  complex_plan: how the complex method runs layers over the algebra, or a marker that it
    does not apply (runtime.methods.complex).
    """

    tensors: dict = field(default_factory=dict)
    methods: dict = field(default_factory=dict)
    variance_profile: np.ndarray | None = None
    op_key: str | None = None
    kernel_table: Any = None
    complex_plan: Any = None


@dataclass(frozen=True, eq=False)
class Algebra:
    """A built algebra.

    structure: float64 (d, d, d) with (x*y)_k = sum_ij T[i,j,k] x_i y_j (x left).  unit: (d,) or None.
    mul(x, y) / mul_scheme(x, y): elementwise products over the last dimension (size d), differentiable.
    """

    name: str
    title: str
    dim: int
    basis: tuple[str, ...]
    structure: np.ndarray
    structure_exact: tuple[tuple[int, int, int, str], ...]
    properties: dict
    unit: np.ndarray | None
    scheme: SchemeData
    fold: FoldPlan
    naive_multiplications: int
    path: Path
    _ops: ModuleType = field(repr=False)
    cache: AlgebraCache = field(default_factory=AlgebraCache, repr=False)

    @property
    def rank(self) -> int:
        return self.scheme.rank

    def mul(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Naive product, (..., d) x (..., d) -> (..., d); real floating-point tensors."""
        self._check_operands("mul", x=x, y=y)
        return self._ops.mul(x, y)

    def mul_scheme(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Product with `rank` real multiplications; same result as `mul` up to rounding."""
        self._check_operands("mul_scheme", x=x, y=y)
        return self._ops.mul_scheme(x, y)

    def _check_operands(self, who: str, **tensors: torch.Tensor) -> None:
        """Real floating-point tensors whose last dimension is one element.  Integer and bool tensors would
        truncate the scheme's fractional coefficients; complex ones are not coordinates over the reals."""
        for label, t in tensors.items():
            require_real_floating(t, f"{self.name}.{who}", label)
            if t.shape[-1:] != (self.dim,):
                raise ValueError(f"{self.name}.{who}: {label} must have last dimension {self.dim} "
                                 f"(one algebra element), got shape {tuple(t.shape)}")

    def constant(self, name: str, dtype: torch.dtype = torch.float64, device: Any = None) -> torch.Tensor:
        """A constant as a torch tensor, made from the float64 values (never from another dtype's copy) and
        cached per dtype and device.  name: "T" (structure, (d, d, d)); "U", "V", "W" (scheme, (r, d));
        "block" ((d, d, d), L(w)[t, s] = sum_a block[a, t, s] w_a); "fold" (the fold plan's (d, p, p) block)."""
        device = torch.device("cpu") if device is None else torch.device(device)
        key = (name, dtype, device)
        hit = self.cache.tensors.get(key)
        if hit is None:
            arrays = {"T": lambda: self.structure, "U": lambda: self.scheme.U, "V": lambda: self.scheme.V,
                      "W": lambda: self.scheme.W, "block": lambda: self.structure.transpose(0, 2, 1),
                      "fold": lambda: self.fold.block}
            if name not in arrays:
                raise KeyError(f"unknown constant {name!r}; known: {', '.join(arrays)}")
            with torch.inference_mode(False):    # a normal tensor even when first asked for under inference_mode
                hit = torch.as_tensor(np.ascontiguousarray(arrays[name]()), dtype=dtype, device=device)
            if _cacheable(hit):
                self.cache.tensors[key] = hit
        return hit

    def structure_tensor(self, dtype: torch.dtype = torch.float64, device: Any = None) -> torch.Tensor:
        """The structure tensor (d, d, d) as a torch tensor (cached per dtype and device)."""
        return self.constant("T", dtype, device)

    def left_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """Left-regular representation L(x) with x*y = L(x) @ y: (..., d) -> (..., d, d)."""
        self._check_operands("left_matrix", x=x)
        T = self.structure_tensor(x.dtype, x.device)
        return torch.einsum("ijk,...i->...kj", T, x)

    def right_matrix(self, y: torch.Tensor) -> torch.Tensor:
        """Right-regular representation R(y) with x*y = R(y) @ x: (..., d) -> (..., d, d)."""
        self._check_operands("right_matrix", y=y)
        T = self.structure_tensor(y.dtype, y.device)
        return torch.einsum("ijk,...j->...ki", T, y)

    def __repr__(self) -> str:
        return f"Algebra({self.name!r}, dim={self.dim}, rank={self.rank})"

    # An Algebra holds an imported module, so it is pickled by name and folder and reloaded from the
    # registry's cache; modules holding one (layers, norms) pickle and deep-copy with no extra code.
    def __reduce__(self):
        return (load_algebra, (self.name, str(self.path.parent)))

    def __deepcopy__(self, memo) -> "Algebra":
        return self


_loaded: dict[tuple[str, str], Algebra] = {}
_lock = threading.Lock()
_tool_digest: list[str] = []


def _current_tool_digest() -> str:
    if not _tool_digest:
        _tool_digest.append(digest.tool_digest())
    return _tool_digest[0]


def staleness(manifest: dict, folder: Path) -> str | None:
    """Why the generated folder is out of date, or None if it is current: the manifest's own content digest, its
    entry in the folder's index, each generated file's digest, the generator's and the specs' digests."""
    path = folder / MANIFEST_NAME
    if manifest.get(contract.DIGEST_FIELD) != contract.content_digest(manifest):
        if contract.DIGEST_FIELD not in manifest:
            return f"{path} has no {contract.DIGEST_FIELD!r} (written by an older build, or edited)"
        return f"{path} was modified after the build (its content no longer matches its {contract.DIGEST_FIELD!r})"
    why = _index_problem(folder)
    if why:
        return why
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return f"{path} is damaged (its 'files' entry is missing or malformed)"
    for name, sha in files.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if digest.sha256_bytes(path.read_bytes()) != sha:
            return f"{path} was modified after the build"
    if manifest.get("tool_digest") != _current_tool_digest():
        return "the code generator changed since the build"
    spec_dir = (folder.parent / str(manifest.get("spec_dir", ""))).resolve()
    if spec_dir.is_dir() and digest.spec_digest(spec_dir) != manifest.get("spec_digest"):
        return f"the specs in {spec_dir} changed since the build"
    return None


def read_index(root: Path) -> dict:
    """The index `<root>/manifest.json` ({"algebras": {name: {"dim", "rank", "manifest"}}, ...}); ValueError (with
    the file and what is wrong) when it is missing, unreadable or not an index."""
    index = root / MANIFEST_NAME
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"the index {index} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"the index {index} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("algebras"), dict):
        raise ValueError(f"the index {index} is damaged (no 'algebras' object)")
    return data


def _index_problem(folder: Path) -> str | None:
    """Why the index beside `folder` does not vouch for `folder`'s manifest (None: it does)."""
    try:
        entry = read_index(folder.parent)["algebras"].get(folder.name)
    except ValueError as e:
        return str(e)
    if not isinstance(entry, dict) or entry.get("manifest") is None:
        return f"the index {folder.parent / MANIFEST_NAME} does not list {folder.name!r}"
    if entry["manifest"] != digest.sha256_bytes((folder / MANIFEST_NAME).read_bytes()):
        return f"{folder / MANIFEST_NAME} does not match its entry in the index {folder.parent / MANIFEST_NAME}"
    return None


def _recorded_spec_dir(root: Path) -> Path | None:
    """The spec folder the index of `root` says it was built from (None when there is no readable index)."""
    try:
        return (root / str(read_index(root)["spec_dir"])).resolve()
    except (ValueError, KeyError):
        return None


def _import_ops(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"algebranets_generated_{name}_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rebuild(manifest: dict | None, folder: Path) -> str:
    """`run `<the command that rebuilds this folder>``, from the spec folder its manifest records."""
    spec_dir = None
    if manifest and isinstance(manifest.get("spec_dir"), str):
        spec_dir = (folder.parent / manifest["spec_dir"]).resolve()
    return f"run `{locations.rebuild_command(spec_dir, folder.parent)}`"


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AlgebraNotBuiltError(f"{path} cannot be read ({type(e).__name__}: {e}); the build was interrupted or "
                                   f"the file was edited: {_rebuild(None, path.parent)}") from None
    if not isinstance(manifest, dict):
        raise AlgebraNotBuiltError(f"{path} is not a manifest (a JSON object): {_rebuild(None, path.parent)}")
    return manifest


def _from_manifest(name: str, manifest: dict, folder: Path) -> Algebra:
    """The Algebra a manifest describes; a missing or malformed field names the file and the field."""
    field_name = "dim"
    try:
        d = int(manifest["dim"])
        field_name = "structure"
        T = contract.dense(manifest["structure"], (d, d, d), float)
        field_name = "scheme"
        s = manifest["scheme"]
        U, V, W = contract.scheme_matrices(s, d, float)
        scheme = SchemeData(U=U, V=V, W=W, provenance=s["provenance"], additions=s["additions"],
                            unusual_coefficients=tuple(s["unusual_coefficients"]))
        field_name = "properties"
        unit = manifest["properties"]["unit"]
        field_name = "fold"
        fold = FoldPlan.from_json(manifest["fold"], T, float)
        field_name = "title / basis"
        title, basis = str(manifest["title"]), tuple(manifest["basis"])
        naive = int(s["naive_multiplications"])
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, AttributeError) as e:
        what = f"missing {e.args[0]!r}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise AlgebraNotBuiltError(f"{folder / MANIFEST_NAME} is damaged: its {field_name!r} entry is unusable "
                                   f"({what}): {_rebuild(manifest, folder)}") from None
    try:
        ops = _import_ops(folder / "ops.py", name)
    except Exception as e:                                  # noqa: BLE001 - any failure names the file
        raise AlgebraNotBuiltError(f"{folder / 'ops.py'} cannot be imported ({type(e).__name__}: {e}): "
                                   f"{_rebuild(manifest, folder)}") from None
    return Algebra(name=name, title=title, dim=d, basis=basis, structure=T,
                   structure_exact=tuple(tuple(e) for e in manifest["structure"]),
                   properties=manifest["properties"], unit=None if unit is None else contract.numbers(unit, float),
                   scheme=scheme, fold=fold, naive_multiplications=naive, path=folder, _ops=ops)


def _problem(name: str, root: Path, check_stale: bool) -> str | None:
    """Why `name` cannot be loaded from `root` as it is (None: it can)."""
    folder = root / name
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        have = sorted(p.name for p in root.iterdir() if (p / MANIFEST_NAME).is_file()) if root.is_dir() else []
        return (f"algebra {name!r} is not built in {root} (built: {', '.join(have) or 'none'}): "
                f"run `{locations.rebuild_command(_recorded_spec_dir(root), root)}`")
    if check_stale:
        manifest = _read_manifest(manifest_path)
        why = staleness(manifest, folder)
        if why:
            return f"generated code for {name!r} is stale: {why}; {_rebuild(manifest, folder)}"
    return None


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """An exclusive lock on `folder` across processes (POSIX; elsewhere only this process's lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        try:
            import fcntl
        except ImportError:                                 # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build_builtin(name: str, root: Path) -> None:
    """Build the built-in algebra `name` into the user-cache folder `root` (installed package, first use)."""
    from codegen.build import build
    from codegen.spec import BuildError, SpecError

    try:
        with _folder_lock(root):
            if _problem(name, root, True) is None:    # another process built it meanwhile
                return
            build(locations.BUILTIN_SPEC_DIR, root, only=[name])
    except SpecError as e:
        raise AlgebraNotBuiltError(f"{name!r} is not a built-in algebra ({e}); build your own specs with "
                                   f"`python -m codegen build --spec-dir DIR --out FOLDER` and load them with "
                                   f"load_algebra({name!r}, path=FOLDER)") from None
    except (BuildError, OSError) as e:
        raise AlgebraNotBuiltError(f"cannot build the built-in algebra {name!r} into {root}: {e}; set "
                                   f"${locations.CACHE_ENV} (or $XDG_CACHE_HOME) to a writable folder") from None


def load_algebra(name: str, path: str | Path | None = None, *, check_stale: bool = True) -> Algebra:
    """The built algebra `name` from `path`; by default from `$ALGEBRANETS_GENERATED` (your own algebras) and,
    for a name not built there, from the built-in algebras' folder (where an installed package builds each
    built-in algebra on first use).  With `path`, only that folder."""
    if isinstance(name, Algebra):
        return name
    if not isinstance(name, str):
        raise TypeError(f"algebra must be a name such as 'H' or an Algebra, got {type(name).__name__}")
    root = Path(path) if path is not None else default_generated_dir()
    builtin = locations.builtin_out_dir()
    if path is None and root.resolve() != builtin.resolve() and not (root / name / MANIFEST_NAME).is_file():
        # $ALGEBRANETS_GENERATED holds your own algebras; the built-in ones still load from their own folder
        try:
            return _load(name, builtin, check_stale, may_build=True)
        except AlgebraNotBuiltError:
            if (builtin / name / MANIFEST_NAME).is_file():
                raise                                   # a built-in algebra, stale or damaged: say so
        # neither: report it as missing from $ALGEBRANETS_GENERATED
    return _load(name, root, check_stale, may_build=path is None)


def _load(name: str, root: Path, check_stale: bool, may_build: bool) -> Algebra:
    """`name` from the folder `root` (memoised); may_build: build a built-in algebra into the user cache."""
    key = (str(root.resolve()), name)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        why = _problem(name, root, check_stale)
        if why and may_build and locations.is_builtin_cache(root):
            _build_builtin(name, root)
            why = _problem(name, root, check_stale)
        if why:
            raise AlgebraNotBuiltError(why)
        folder = root / name
        alg = _from_manifest(name, _read_manifest(folder / MANIFEST_NAME), folder)
        _loaded[key] = alg
        return alg


def available_algebras(path: str | Path | None = None) -> list[str]:
    """Names of the algebras built in the generated folder."""
    root = Path(path) if path is not None else default_generated_dir()
    if not (root / MANIFEST_NAME).is_file():
        return []
    try:
        return list(read_index(root)["algebras"])
    except ValueError as e:
        raise AlgebraNotBuiltError(f"{e}: run `{locations.rebuild_command(None, root)}`") from None


def clear_cache() -> None:
    """Forget loaded algebras (after a rebuild in the same process)."""
    with _lock:
        _loaded.clear()
        _tool_digest.clear()
