"""Generated CPU kernels for small batches and element sparsity, compiled on first use and cached.

    from runtime.kernels import cpu
    cpu.kernels_available()                    # a C++ compiler is there and the torch ops load
    y = cpu.dense("H", weight, x, bias)        # x (..., in*d), weight (out, in, d) -> (..., out*d)
    y = cpu.bsr_linear("H", crow, col, values, x, bias)   # element-sparse weight (block-CSR), same layout
    y = cpu.conv_checked(A, weight, x, bias, stride, dilation)   # groups=1 conv via whole-element im2col
    y = cpu.learned(weight, T, x, bias)        # a learned-algebra layer, structure T (d, d, d) given per call

`python -m codegen build` emits, per algebra, `generated/<Name>/<Name>_cpu.cpp` from the same exact
arithmetic as the CUDA kernels; this package compiles it with the system C++ compiler (-O3 -march=native,
cached by content hash under `cache_dir()`, see `_build`), and runs it through the `torch.library` ops of
`ops.py` (`torch.ops.algebranets_cpu.dense` / `.bsr`), threaded over output rows with torch's intra-op
threads.  The ops have fake implementations and exact gradients, so `torch.compile(fullgraph=True)`,
`torch.export` and autograd (double backward included) work.

runtime.kernels.choice sends linear layers to `dense` for method="kernel", and for method="auto" on CPU at
inference for batches up to a measured crossover; `runtime.sparsity`'s inference layers run `bsr_checked`
(`bsr_linear` without re-validating what the layer has checked).
Without a C++ compiler (or when it fails) `ready()` is False, one `KernelUnavailableWarning` says why, and
the layers use their torch paths.  Each compile is announced in one line on stderr first; an algebra above the
first-use size limit (ALGEBRANETS_CPU_MAX_TERMS nonzero structure constants) is not compiled on first use (one
warning, torch paths) unless compiled ahead: `precompile()`, `python -m runtime.kernels.cpu compile [NAME ...]`.
ALGEBRANETS_CPU_MARCH builds for another target than this machine's (e.g. x86-64-v3).
"""
from __future__ import annotations

import functools
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ...checks import needs_grad
from ...im2col import element_columns, from_rows
from ...registry import Algebra, available_algebras, load_algebra
from ..compiler import ENV_CXX, find_compiler
from ..opkey import key_of
from . import ops
from ._build import ENV_CACHE, KernelBuildError, cache_dir, isa_macros, target_march

__all__ = ["ready", "kernels_available", "unavailable_reason", "load_kernels", "dense", "dense_checked", "conv_checked",
           "bsr_linear", "bsr_checked", "learned", "learned_checked", "learned_ready", "wide_vectors",
           "KernelUnavailableWarning", "KernelBuildError", "cache_dir", "find_compiler", "ENV_CXX", "ENV_CACHE", "DTYPES",
           "ops", "precompile", "pack", "unpack", "planar_checked"]

#: dtypes the kernels compute in
DTYPES = (torch.float32, torch.float64)


class KernelUnavailableWarning(RuntimeWarning):
    """The CPU kernels cannot run here (no compiler, or it failed); the torch paths run instead."""


_lock = threading.Lock()
_failed: dict[str, str] = {}        # algebra key ("" for the glue) -> why it cannot run
_logs: dict[str, str] = {}
_warned: set[str] = set()


def _fail(key: str, e: Exception) -> None:
    why = str(e)
    _failed[key] = why
    _logs[key] = getattr(e, "log", "")
    if why not in _warned:
        _warned.add(why)
        more = " (runtime.kernels.cpu.unavailable_reason() has the compiler's output)" if _logs[key] else ""
        warnings.warn(f"AlgebraNets CPU kernels unavailable: {why}{more}; layers use the torch paths instead",
                      KernelUnavailableWarning, stacklevel=4)


def kernels_available() -> bool:
    """Whether the kernel ops load (compiling them on the first call).  Never raises; warns once if not."""
    if "" in _failed:
        return False
    try:
        ops.load_glue()
        return True
    except (KernelBuildError, OSError, RuntimeError) as e:
        _fail("", e)
        return False


def unavailable_reason() -> str | None:
    """Why the kernels cannot run, with the compiler's output if it failed (None when nothing failed)."""
    key = "" if "" in _failed else next(iter(_failed), None)
    if key is None:
        return None
    return _failed[key] + (f"\n{_logs[key]}" if _logs.get(key) else "")


def load_kernels(algebra: Algebra | str) -> str:
    """Compile (if not cached) and load an algebra's kernels; returns its op key.  Raises KernelBuildError."""
    return ops.register(load_algebra(algebra))


def precompile(names: Sequence[str] | None = None, generated: str | Path | None = None
               ) -> Iterator[tuple[str, float, str | None]]:
    """Compile (or find cached) the torch ops and the kernels of `names` (default: every algebra in the generated
    folder `generated`, default the built-in one), whatever their size.  Yields (name, seconds, None) per
    library ready, or (name, seconds, why) where it failed; "(torch ops)" is the glue."""
    t = time.perf_counter()
    try:
        ops.load_glue()
    except (KernelBuildError, OSError, RuntimeError) as e:
        yield "(torch ops)", time.perf_counter() - t, str(e)
        return
    yield "(torch ops)", time.perf_counter() - t, None
    for name in names or available_algebras(generated):
        t = time.perf_counter()
        try:
            ops.library(load_algebra(name, generated), force=True)
            yield name, time.perf_counter() - t, None
        except (KernelBuildError, OSError, RuntimeError, LookupError, ValueError) as e:
            yield name, time.perf_counter() - t, str(e).splitlines()[0]


@torch.compiler.assume_constant_result
def ready(algebra: Algebra) -> bool:
    """Whether the algebra's kernels run in this process (compiles and loads them on first use; warns once and
    returns False when that is impossible).  A constant to torch.compile."""
    if ops.registered(algebra):           # the hot path: nothing else to look at
        return True
    return _load_once(key_of(algebra), lambda: ops.registered(algebra), lambda: ops.register(algebra))


def learned_ready() -> bool:
    """Whether the learned-algebra layers' kernel (learned.cpp) runs in this process; compiles
    and loads it on first use, warns once and returns False when that is impossible."""
    return _load_once("learned", ops.learned_loaded, ops.load_learned)


def _load_once(key: str, loaded: Callable[[], bool], load: Callable[[], object]) -> bool:
    """Whether a kernel library runs in this process: `load` (compile and load) on first use; when that fails,
    one warning (recorded under `key`, or "" when the glue itself failed) and False from then on."""
    if loaded():
        return True
    if key in _failed or "" in _failed:
        return False
    with _lock:
        try:
            load()
            return True
        except (KernelBuildError, OSError, RuntimeError) as e:
            _fail(key if ops.glue_loaded() else "", e)
            return False


@functools.cache
def wide_vectors() -> bool:
    """Whether the kernels are built for 512-bit vectors (AVX-512: 32 registers), the target's ISA macros read
    once; False without a compiler."""
    cxx = find_compiler()
    try:
        return cxx is not None and "__AVX512F__" in isa_macros(cxx, target_march())
    except KernelBuildError:
        return False


def learned(weight: Tensor, structure: Tensor, x: Tensor, bias: Tensor | None = None) -> Tensor:
    """A layer over a learned algebra with the structure taken at run time (the transform path in one op): weight
    (O, I, d), structure (d, d, d), x (N, I*d), bias (O, d) or None -> (N, O*d), the weight streamed once per
    call.  Float32 / float64 CPU tensors of one dtype; inference only (a ValueError when a gradient is needed)."""
    if needs_grad(weight, structure, x, bias):
        raise ValueError("runtime.kernels.cpu.learned: inference only (no gradient); use the layer's block path")
    if not learned_ready():
        raise KernelBuildError(f"runtime.kernels.cpu.learned: unavailable: "
                               f"{_failed.get('learned') or _failed.get('')}", log=unavailable_reason() or "")
    return learned_checked(weight, structure, x, bias)


def learned_checked(weight: Tensor, structure: Tensor, x: Tensor, bias: Tensor | None) -> Tensor:
    """`learned` for callers that checked that no gradient is needed and that `learned_ready()` holds."""
    return _call("learned", (weight, structure, x, bias), ())


def _variant(variant: str | None) -> int:
    if variant is None:
        return -1
    if variant not in ops.VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, ops.VARIANTS))} or None, got {variant!r}")
    return ops.VARIANTS[variant]


def _checked(algebra: Algebra | str, op: str, x: Tensor, values: Tensor, bias: Tensor | None,
             layout: str) -> tuple[Algebra, str]:
    """The algebra and the caller's name for messages, after checking dtypes, the weight layout
    ("(out, in, d)" or "(nnz, d)") and that the kernels run here."""
    alg = load_algebra(algebra)
    who = f"runtime.kernels.cpu.{op}({alg.name})"
    d = alg.dim
    if values.dim() != layout.count(",") + 1 or values.shape[-1] != d:
        raise ValueError(f"{who}: the weights must be {layout.replace('d)', f'{d})')}, got {tuple(values.shape)}")
    if values.dtype not in DTYPES:
        raise TypeError(f"{who}: the CPU kernels compute in float32 or float64, got {values.dtype}")
    if x.dtype != values.dtype or (bias is not None and bias.dtype != values.dtype):
        raise TypeError(f"{who}: x, weights and bias must share one dtype, got {x.dtype}, {values.dtype}"
                        + ("" if bias is None else f", {bias.dtype}"))
    if x.shape[-1:] == () or x.shape[-1] % d:
        raise ValueError(f"{who}: x's last dimension must be a multiple of d={d} ({alg.name}), got {tuple(x.shape)}")
    if not ready(alg):
        raise KernelBuildError(f"{who}: the CPU kernels of {alg.name} are unavailable: "
                               f"{_failed.get(key_of(alg)) or _failed.get('')}", log=unavailable_reason() or "")
    return alg, who


def dense(algebra: Algebra | str, weight: Tensor, x: Tensor, bias: Tensor | None = None, *,
          variant: str | None = None) -> Tensor:
    """y_o = sum_i weight_oi * x_i + bias_o with the generated kernel (weight left).

    weight (out, in, d), x (..., in*d) element-major, bias (out, d) or None -> (..., out*d).  Differentiable.
    variant: None (the kernel's choice for the batch), "small", "lanes_naive" or "lanes_scheme".
    """
    alg, who = _checked(algebra, "dense", x, weight, bias, "(out, in, d)")
    out, inn, d = weight.shape
    if x.shape[-1] != inn * d:
        raise ValueError(f"{who}: x must be (..., {inn * d}) = (..., in*d), got {tuple(x.shape)}")
    y = torch.ops.algebranets_cpu.dense(key_of(alg), weight, x.reshape(-1, inn, d), bias, _variant(variant))
    return y.reshape(*x.shape[:-1], out * d)


def dense_checked(algebra: Algebra, weight: Tensor, x: Tensor, bias: Tensor | None) -> Tensor:
    """`dense` for callers that have checked the shapes and dtypes and that `ready(algebra)` holds
    (runtime.functional): x (N, in*d) -> (N, out*d), no validation beyond the op's own."""
    x3 = x.view(x.shape[0], weight.shape[1], algebra.dim)
    y = _call("dense", (key_of(algebra), weight, x3, bias, -1), (weight, x3, bias))
    return y.view(x.shape[0], weight.shape[0] * algebra.dim)


def bsr_checked(algebra: Algebra, crow: Tensor, col: Tensor, values: Tensor, x: Tensor,
                bias: Tensor | None) -> Tensor:
    """`bsr_linear` for callers that have checked dtypes and that `ready(algebra)` holds (runtime.sparsity):
    x (B, in, d) -> (B, out, d), col int32, no validation beyond the op's own."""
    return _call("bsr", (key_of(algebra), crow, col, values, x, bias, -1), (values, x, bias))


def conv_checked(algebra: Algebra, weight: Tensor, x: Tensor, bias: Tensor | None, stride: tuple[int, ...],
                 dilation: tuple[int, ...]) -> Tensor:
    """A groups=1 convolution through the dense kernel: whole-element im2col rows times the (C_out, C_in*K, d)
    weight, for callers that have checked shapes and dtypes and that `ready(algebra)` holds.
    x (N, C_in*d, *S) already padded, weight (C_out, C_in, *kernel, d) -> (N, C_out*d, *S')."""
    d = algebra.dim
    X, out_sp = element_columns(x, d, tuple(weight.shape[2:-1]), stride, dilation)
    y = dense_checked(algebra, weight.reshape(weight.shape[0], -1, d), X.reshape(X.shape[0], X.shape[1] * d), bias)
    return from_rows(y.reshape(X.shape[0], weight.shape[0], d), x.shape[0], out_sp)


def pack(algebra: Algebra | str, weight: Tensor) -> Tensor:
    """The compact weight (out, in, d) repacked for the planar kernel of this process's target: component-major
    blocks of the target's vector lanes, (groups, blocks, rows per group, d, lanes), zero-padded.  Float32 /
    float64 CPU tensors; no autograd (an inference form).  `planar_checked` runs it, `unpack` inverts it."""
    alg, _ = _checked(algebra, "pack", weight.new_empty((1, weight.shape[-1] if weight.dim() else 0)), weight, None,
                      "(out, in, d)")
    with torch.no_grad():
        return torch.ops.algebranets_cpu.pack(key_of(alg), weight.detach())


def unpack(algebra: Algebra | str, packed: Tensor, out: int, in_features: int) -> Tensor:
    """The compact weight (out, in_features, d) of a packed one (exactly: the inverse permutation of `pack`)."""
    alg = load_algebra(algebra)
    with torch.no_grad():
        return torch.ops.algebranets_cpu.unpack(key_of(alg), packed, out, in_features)


def planar_checked(algebra: Algebra, packed: Tensor, x: Tensor, bias: Tensor | None, out: int,
                   in_features: int) -> Tensor:
    """y = the packed weight (of an (out, in) layer) times x (+ bias) with the planar kernel, for callers that
    checked dtypes, that `ready(algebra)` holds and that no gradient is needed: x (N, in*d) -> (N, out*d); the op
    refuses a packed weight of another layout or size."""
    op = _op_defaults.get("planar") or _op_defaults.setdefault("planar", torch.ops.algebranets_cpu.planar.default)
    # (no autograd formula is registered for it, so there is no autograd wrapper to step around)
    return op(key_of(algebra), packed, x, bias, out, in_features)


_op_defaults: dict = {}          # op name -> torch.ops.algebranets_cpu.<name>.default, looked up once


def _call(name: str, args: tuple, differentiable: tuple) -> Tensor:
    """Run op `name`.  When autograd would record nothing (grad mode off or no differentiable input requires
    grad) it is called below the autograd dispatch key, skipping the Python autograd wrapper that
    `torch.library.register_autograd` installs (~4 us a call; the result is the same tensor without a graph
    node, which it would not have had anyway).  Traced code (torch.compile) calls the op as usual."""
    if torch.compiler.is_compiling() or needs_grad(*differentiable):
        return getattr(torch.ops.algebranets_cpu, name)(*args)
    op = _op_defaults.get(name)
    if op is None:
        op = _op_defaults[name] = getattr(torch.ops.algebranets_cpu, name).default
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def bsr_linear(algebra: Algebra | str, crow: Tensor, col: Tensor, values: Tensor, x: Tensor,
               bias: Tensor | None = None, *, variant: str | None = None) -> Tensor:
    """Element-sparse weight (block-CSR, one algebra element per block, runtime.sparsity.block_csr) times x.

    crow (out+1,) int64, col (nnz,) int32 or int64, values (nnz, d), x (..., in*d), bias (out, d) ->
    (..., out*d): y[b, o] = sum_{p in row o} values[p] * x[b, col[p]] + bias[o].  Differentiable in values, x
    and bias.  variant as in `dense`.
    """
    alg, _ = _checked(algebra, "bsr_linear", x, values, bias, "(nnz, d)")
    d = alg.dim
    out = crow.shape[0] - 1
    lead = x.shape[:-1]
    y = torch.ops.algebranets_cpu.bsr(key_of(alg), crow, col, values, x.reshape(-1, x.shape[-1] // d, d), bias,
                                      _variant(variant))
    return y.reshape(*lead, out * d)
