"""When layers run the generated kernels instead of their torch paths.

* method="kernel": the generated kernel whenever it applies (CPU: float32 / float64 tensors, no autocast,
  and a C++ compiler, see runtime.cpu; CUDA: runtime.cuda's gemv with a kernel backend).  Where it does not
  apply, one warning says why and the layer runs the path "auto" would pick among block / fold / bilinear.
  With gradients the kernel still runs the forward and autograd uses the exact gradient formulas of the op.
* method="auto" on CPU: the kernel at inference (no gradient needed) for batches up to
  `cpu_max_batch(algebra)`; training keeps the torch paths, whose backward the kernel could not
  speed up.  On CUDA, `auto` runs the generated gemv for small batches (runtime.functional).

The crossovers below are measured, not modelled: `benchmarks/bench_inference.py --crossover` times the
kernel against the torch path `auto` would otherwise pick, per algebra and batch, at N = 512 and 2048 real
features (docs/benchmarks.md, "Crossovers"); each entry is the largest measured batch (at most 16, the batch
range the dense kernel is built for) up to which the kernel won at both sizes, a single batch within the
run-to-run noise (kernel / torch <= 1.10) not ending the run.
"""
from __future__ import annotations

import warnings

import torch
import torch.autograd.forward_ad as fwAD

from .registry import Algebra

__all__ = ["CPU_MAX_BATCH", "CPU_MAX_BATCH_OTHER", "cpu_max_batch", "needs_grad", "cpu_kernel_applies", "exporting"]

#: algebra -> largest batch at which `auto` runs the CPU kernel at inference (docs/benchmarks.md, "Crossovers";
#: one thread, CPU time, on the 2-core AMD EPYC benchmark machine)
CPU_MAX_BATCH: dict[str, int] = {"R": 16, "C": 16, "H": 16, "Dual": 16, "Cross3": 16, "M2R": 16, "M3R": 16,
                                 "M4R": 8, "M2C": 16}
#: for algebras without a measurement (user algebras)
CPU_MAX_BATCH_OTHER = 8


def cpu_max_batch(algebra: Algebra) -> int:
    """The largest batch `auto` runs through the CPU kernel for this algebra."""
    return CPU_MAX_BATCH.get(algebra.name, CPU_MAX_BATCH_OTHER)


def needs_grad(*tensors) -> bool:
    """Whether autograd will record this call (grad mode on and some input requires grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def has_tangent(*tensors) -> bool:
    """Whether some input carries a forward-mode AD tangent (the generated kernels have no forward-mode formula:
    such calls take the torch paths, which propagate the tangent or refuse clearly, instead of dropping it)."""
    if fwAD._current_level < 0:             # no dual level is active: nothing can carry a tangent
        return False
    return any(t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors)


def cpu():
    """runtime.cpu, imported on first use (it imports torch's C++ extension machinery)."""
    global _cpu_module
    if _cpu_module is None:
        from . import cpu
        _cpu_module = cpu
    return _cpu_module


_cpu_module = None


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except (TypeError, RuntimeError):
        return False


def exporting() -> bool:
    """Whether torch.onnx.export is running (either exporter): the generated kernels are custom ops without
    ONNX lowerings, so layers take the torch path (the `auto` choice) silently while exporting to ONNX.
    Plain torch.export keeps them: its graphs hold the custom ops, which torch runs."""
    return torch.onnx.is_in_onnx_export()


def _decline(requested: str, why: str) -> bool:
    if requested == "kernel":
        warnings.warn(f"method='kernel': {why}; running the torch path 'auto' picks instead", RuntimeWarning,
                      stacklevel=4)
    return False


def cpu_kernel_applies(requested: str, A: Algebra, x: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor | None, rows: int | None, conv_groups: int = 1) -> bool:
    """Whether this CPU call runs through runtime.cpu: `requested` is the method in force ("kernel" or "auto";
    anything else: False), rows the GEMM rows (batch, or batch x output positions for conv; None: any, as for
    the element-sparse layers, where the kernel runs at every batch and with gradients)."""
    if requested not in ("kernel", "auto") or x.device.type != "cpu" or exporting():
        return False
    if has_tangent(x, weight, bias):
        return _decline(requested, "an input carries a forward-mode AD tangent (the kernels have no forward-mode "
                                   "formula)")
    if requested == "auto" and rows is not None and (rows > cpu_max_batch(A) or needs_grad(x, weight, bias)):
        return False
    kernels = cpu()
    if weight.dtype not in kernels.DTYPES or x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        return _decline(requested, f"the CPU kernels compute in float32 / float64 with one dtype, got "
                                   f"{x.dtype} x {weight.dtype}")
    if _autocast_on("cpu"):
        return _decline(requested, "CPU autocast is on (the kernels have no reduced-precision path)")
    if conv_groups != 1:
        return _decline(requested, f"grouped convolutions (groups={conv_groups}) have no kernel")
    return kernels.ready(A)         # when False, runtime.cpu has warned (once) why
