"""The CPU kernels as `torch.library` ops: ``torch.ops.algebranets_cpu.dense``, ``.bsr`` and those below (defined
in C++, runtime/kernels/cpu/glue.cpp), with fake implementations (torch.compile, torch.export) and autograd
formulas here.

    dense(algebra, weight, x, bias?, variant=-1) -> (B, out, d)      weight (out, in, d), x (B, in, d)
    bsr(algebra, crow, col, values, x, bias?, variant=-1) -> (B, out, d)
                                                                     block-CSR: crow (out+1,) int64, col (nnz,)
                                                                     int32 / int64, values (nnz, d); x (B, in, d)
    learned(weight, structure, x, bias?) -> (N, O*d)                 a learned-algebra layer: weight (O, I, d),
                                                                     structure (d, d, d), x (N, I*d)
                                                                     (learned.cpp; inference only, no autograd)
    pack(algebra, weight) -> packed                                  the weight (out, in, d) repacked for the
                                                                     planar kernel: (groups, blocks, rows per
                                                                     group, d, lanes) of this process's target
    unpack(algebra, packed, out, in_) -> (out, in, d)                its inverse
    planar(algebra, packed, x, bias?, out, in_) -> (B, out*d)        x (B, in*d) times the packed weight
                                                                     (inference only, no autograd)

`algebra` is the string key of runtime.kernels.opkey; `variant` (-1: the kernel's choice, 0 small, 1 lanes naive,
2 lanes scheme) exists for tests and benchmarks.  Gradients are the exact ones of runtime.kernels.reference
(runtime.kernels.linear_ops, shared with the CUDA ops), themselves differentiable, so double backward works.

Loading: `load_glue()` compiles (once per cache) and loads the ops; `register(algebra)` compiles and loads an
algebra's generated kernels and registers them with the ops under its key.  Both raise KernelBuildError when
there is no compiler or it fails; runtime.kernels.cpu turns that into one warning and the torch paths.
"""
from __future__ import annotations

import ctypes
import json
import threading
from pathlib import Path

import torch

from ...registry import Algebra
from .. import linear_ops as lin
from ..compiler import find_compiler, no_compiler_message
from ..opkey import algebra_of, key_of
from . import _build

NS = "algebranets_cpu"
VARIANTS = {"small": 0, "lanes_naive": 1, "lanes_scheme": 2}

LEARNED_SOURCE = Path(__file__).resolve().parent / "learned.cpp"

_lock = threading.RLock()
_glue: dict = {}                      # "lib": ctypes handle of the loaded glue
_libraries: dict[str, ctypes.CDLL] = {}   # algebra key -> its kernel library (kept alive)


def load_glue() -> None:
    """Compile (if not cached) and load the torch ops, and register their fake and autograd implementations."""
    with _lock:
        if _glue:
            return
        cxx = find_compiler()
        if cxx is None:
            raise _build.KernelBuildError(no_compiler_message())
        path = _build.glue_library(cxx)
        torch.ops.load_library(str(path))
        lib = ctypes.CDLL(str(path))
        lib.algebranets_cpu_register.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                                 ctypes.POINTER(ctypes.c_void_p)]
        lib.algebranets_cpu_register.restype = ctypes.c_int
        _register_python_parts()
        _glue.update(lib=lib, cxx=cxx)


def register(algebra: Algebra | str) -> str:
    """Compile (if not cached) and load the algebra's CPU kernels; returns its op key."""
    alg = algebra if isinstance(algebra, Algebra) else algebra_of(key_of(algebra))
    key = key_of(alg)
    with _lock:
        if key in _libraries:
            return key
        load_glue()
        table, path = library(alg)
        lib = ctypes.CDLL(str(path))
        entry = table["entry_points"]
        abi = getattr(lib, entry["abi"])
        abi.restype = ctypes.c_int
        names = [entry[f"{kind}_{s}"] for s in ("f32", "f64")
                 for kind in ("variant", "work", "prep", "rows", "packed_size", "pack")]
        fns = (ctypes.c_void_p * len(names))(*[ctypes.cast(getattr(lib, n), ctypes.c_void_p).value for n in names])
        if _glue["lib"].algebranets_cpu_register(key.encode(), abi(), int(table["dim"]), fns) != 0:
            raise _build.KernelBuildError(f"{path} was generated for CPU kernel ABI {abi()}, the runtime speaks "
                                          f"another: run `python -m codegen build`")
        _libraries[key] = lib
        return key


def library(alg: Algebra, *, force: bool = False) -> tuple[dict, Path]:
    """The algebra's kernel table (cpu_kernels.json) and compiled library (compiled now if not cached; above the
    first-use size limit only with `force`).  Raises KernelBuildError."""
    cxx = _glue.get("cxx") or find_compiler()
    if cxx is None:
        raise _build.KernelBuildError(_no_compiler())
    table = json.loads((alg.path / "cpu_kernels.json").read_text())
    path = _build.kernel_library(cxx, alg.path / table["source"], alg.name, int(table["naive_multiplications"]),
                                 force=force)
    return table, path


def load_learned() -> None:
    """Compile (if not cached) and load the learned layers' kernel (learned.cpp) for the target
    (runtime.kernels.cpu._build) and register it with the `learned` op.  Raises KernelBuildError."""
    with _lock:
        if "learned" in _libraries:
            return
        load_glue()
        path = _build.kernel_library(_glue["cxx"], LEARNED_SOURCE, "learned")
        lib = ctypes.CDLL(str(path))
        lib.algebranets_learned_abi.restype = ctypes.c_int
        names = [f"algebranets_{kind}_{t}" for t in ("f32", "f64") for kind in ("skinny", "prep")]
        fns = (ctypes.c_void_p * 4)(*[ctypes.cast(getattr(lib, n), ctypes.c_void_p).value for n in names])
        register = _glue["lib"].algebranets_cpu_register_learned
        register.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
        register.restype = ctypes.c_int
        if register(lib.algebranets_learned_abi(), fns) != 0:
            raise _build.KernelBuildError(f"{path} speaks another learned-kernel ABI than the glue")
        _libraries["learned"] = lib


def learned_loaded() -> bool:
    return "learned" in _libraries


def glue_loaded() -> bool:
    return bool(_glue)


def registered(algebra: Algebra) -> bool:
    return algebra.cache.op_key is not None and algebra.cache.op_key in _libraries


# ------------------------------------------------------------------------ fake and autograd (once)
def _register_python_parts() -> None:
    torch.library.register_fake(f"{NS}::dense")(lin.gemv_fake)
    torch.library.register_fake(f"{NS}::bsr")(lin.bsr_fake)
    torch.library.register_fake(f"{NS}::learned")(
        lambda weight, structure, x, bias: x.new_empty((x.shape[0], weight.shape[0] * weight.shape[2])))
    torch.library.register_fake(f"{NS}::unpack")(
        lambda algebra, packed, out, in_: packed.new_empty((out, in_, packed.shape[3])))
    torch.library.register_fake(f"{NS}::planar")(
        lambda algebra, packed, x, bias, out, in_: x.new_empty((x.shape[0], out * packed.shape[3])))
    torch.library.register_autograd(f"{NS}::dense", lin.gemv_backward, setup_context=lin.gemv_setup)
    torch.library.register_autograd(f"{NS}::bsr", lin.bsr_backward, setup_context=lin.bsr_setup)
