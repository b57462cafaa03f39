"""When layers run the generated kernels instead of their torch paths: the one place that decides, for the CPU
kernels (runtime.kernels.cpu) and the CUDA gemv (runtime.kernels.cuda).

* method="kernel": the generated kernel whenever it applies (CPU: float32 / float64 tensors, no autocast,
  and a C++ compiler; CUDA: a kernel backend, CuPy).  Where it does not apply, one warning says why and the
  layer runs the path "auto" would pick among the torch paths.  With gradients the kernel still runs the
  forward and autograd uses the exact gradient formulas of the op.
* method="auto" on CPU: the kernel at inference (no gradient needed) for batches up to
  `cpu_max_batch(algebra)`; training keeps the torch paths, whose backward the kernel could not speed up.
  On CUDA, `auto` runs the generated gemv for batches one pass of it serves.

    run = dense_kernel(requested, A, x2, weight, bias, rows)    # None: use a torch path
    y = run(A, weight, x2, bias)                                 # x2 (N, in*d) -> (N, out*d)

The CPU crossovers below are measured, not modelled: `benchmarks/bench_inference.py --crossover` times the
kernel against the torch path `auto` would otherwise pick, per algebra and batch, at N = 512 and 2048 real
features (docs/benchmarks.md, "Crossovers"); each entry is the largest measured batch (at most 16, the batch
range the dense kernel is built for) up to which the kernel won at both sizes, a single batch within the
run-to-run noise (kernel / torch <= 1.10) not ending the run.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch

from ..checks import autocast_dtype, has_tangent, needs_grad
from ..registry import Algebra

__all__ = ["CPU_MAX_BATCH", "CPU_MAX_BATCH_OTHER", "cpu_max_batch", "cpu_kernel_applies", "cuda_gemv_applies",
           "dense_kernel", "learned_kernel", "LEARNED_MAX_COLUMNS", "cpu", "exporting"]

#: algebra -> largest batch at which `auto` runs the CPU kernel at inference (docs/benchmarks.md, "Crossovers";
#: one thread, CPU time, on the 2-core AMD EPYC benchmark machine).  O (the octonions) is not measured yet: the
#: conservative value of user algebras
CPU_MAX_BATCH: dict[str, int] = {"R": 16, "C": 16, "H": 16, "Dual": 16, "Cross3": 16, "M2R": 16, "M3R": 16,
                                 "M4R": 8, "M2C": 16, "O": 8}
#: for algebras without a measurement (user algebras)
CPU_MAX_BATCH_OTHER = 8

KernelCall = Callable[[Algebra, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def cpu_max_batch(algebra: Algebra) -> int:
    """The largest batch `auto` runs through the CPU kernel for this algebra."""
    return CPU_MAX_BATCH.get(algebra.name, CPU_MAX_BATCH_OTHER)


def cpu():
    """runtime.kernels.cpu, imported on first use (it imports torch's C++ extension machinery)."""
    global _cpu_module
    if _cpu_module is None:
        from . import cpu as module
        _cpu_module = module
    return _cpu_module


_cpu_module = None


def exporting() -> bool:
    """Whether torch.onnx.export is running (either exporter): the generated kernels are custom ops without
    ONNX lowerings, so layers take the torch path (the `auto` choice) silently while exporting to ONNX.
    Plain torch.export keeps them: its graphs hold the custom ops, which torch runs.  Both exporters trace
    (TorchScript tracing, or torch.export), so eager calls skip torch.onnx's own check (~1 us of imports a call,
    on the batch-1 hot path) behind the cheap tracing flags."""
    if not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()):
        return False
    return torch.onnx.is_in_onnx_export()


def _decline(requested: str, why: str) -> bool:
    if requested == "kernel":
        warnings.warn(f"method='kernel': {why}; running the torch path 'auto' picks instead", RuntimeWarning,
                      stacklevel=4)
    return False


def cpu_kernel_applies(requested: str, A: Algebra, x: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor | None, rows: int | None, conv_groups: int = 1) -> bool:
    """Whether this CPU call runs through runtime.kernels.cpu: `requested` is the method in force ("kernel" or
    "auto"; anything else: False), rows the GEMM rows (batch, or batch x output positions for conv; None: any,
    as for the element-sparse layers, where the kernel runs at every batch and with gradients)."""
    if requested not in ("kernel", "auto") or x.device.type != "cpu" or exporting():
        return False
    if has_tangent(x, weight, bias):
        return _decline(requested, "an input carries a forward-mode AD tangent (the kernels have no forward-mode "
                                   "formula)")
    if requested == "auto" and rows is not None and (rows > cpu_max_batch(A) or needs_grad(x, weight, bias)):
        return False
    kernels = cpu()
    if (weight.dtype not in kernels.DTYPES or x.dtype != weight.dtype
            or (bias is not None and bias.dtype != weight.dtype)):
        return _decline(requested, f"the CPU kernels compute in float32 / float64 with one dtype, got "
                                   f"{x.dtype} x {weight.dtype}")
    if autocast_dtype("cpu") is not None:
        return _decline(requested, "CPU autocast is on (the kernels have no reduced-precision path)")
    if conv_groups != 1:
        return _decline(requested, f"grouped convolutions (groups={conv_groups}) have no kernel")
    return kernels.ready(A)         # when False, runtime.kernels.cpu has warned (once) why


def cuda_gemv_applies(requested: str, A: Algebra, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      rows: int) -> bool:
    """Whether this call runs the generated CUDA gemv (runtime.kernels.cuda, needs CuPy): CUDA tensors of one
    dtype the kernels store, no autocast, and a batch that one pass over the compact weights serves."""
    if not x.is_cuda or requested not in ("auto", "kernel") or autocast_dtype("cuda") is not None or exporting():
        return False
    if has_tangent(x, weight, bias):
        return False
    from . import cuda
    return (cuda.kernels_available(x) and x.dtype == weight.dtype and weight.device == x.device
            and weight.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and (bias is None or bias.dtype == weight.dtype) and 0 < rows <= cuda.max_gemv_batch(A))


def _cuda_gemv(A: Algebra, weight: torch.Tensor, x2: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    from . import cuda
    return cuda.gemv(A, weight, x2, bias)


def _cpu_dense(A: Algebra, weight: torch.Tensor, x2: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return cpu().dense_checked(A, weight, x2, bias)


#: the most columns (rows x d of a learned-algebra layer's input) the learned kernel takes, for kernels built with
#: 512-bit vectors (AVX-512) and narrower ones (AVX2, NEON); above, torch's GEMM is faster (measured:
#: docs/benchmarks.md, "Learned algebras")
LEARNED_MAX_COLUMNS = {"wide": 16, "narrow": 8}


def learned_kernel(weight: torch.Tensor, structure: torch.Tensor, x2: torch.Tensor,
                   bias: torch.Tensor | None) -> Callable | None:
    """runtime.kernels.cpu.learned_checked for a learned-algebra linear call at inference (no gradient, CPU float32 /
    float64 of one dtype, no autocast, not tracing for export, rows x d <= LEARNED_MAX_COLUMNS), or None."""
    if (x2.device.type != "cpu" or weight.device.type != "cpu" or needs_grad(weight, structure, x2, bias)
            or has_tangent(weight, structure, x2, bias) or exporting() or autocast_dtype("cpu") is not None):
        return None
    kernels = cpu()
    limit = LEARNED_MAX_COLUMNS["wide" if kernels.wide_vectors() else "narrow"]
    if (x2.shape[0] * weight.shape[-1] > limit or weight.dtype not in kernels.DTYPES
            or any(t is not None and t.dtype != weight.dtype for t in (structure, x2, bias))):
        return None
    return kernels.learned_checked if kernels.learned_ready() else None


def dense_kernel(requested: str, A: Algebra, x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 rows: int) -> KernelCall | None:
    """The generated kernel a dense linear call (x2 (rows, in*d)) runs with, or None for the torch paths."""
    if cuda_gemv_applies(requested, A, x2, weight, bias, rows):
        return _cuda_gemv
    if cpu_kernel_applies(requested, A, x2, weight, bias, rows):
        return _cpu_dense
    return None
