"""Functional algebra layers: `algebra_linear`, `algebra_conv1d/2d/3d` and `algebra_conv_transpose1d/2d/3d`.

Layout (docs/design.md): an algebra tensor is a real tensor whose feature / channel dimension has size C*d,
element-major (component k of element c at index c*d + k).  The weight is the LEFT factor:

    algebra_linear:  x (..., in*d), weight (out, in, d), bias (out, d)        -> (..., out*d)
                     y_o = sum_i w_oi * x_i + b_o
    algebra_convNd:  x (N, C_in*d, *spatial) (or unbatched (C_in*d, *spatial)),
                     weight (C_out, C_in // groups, *kernel, d), bias (C_out, d)  -> (N, C_out*d, *spatial')
    algebra_conv_transposeNd:  x as above, weight (C_in, C_out // groups, *kernel, d) (torch's transposed layout),
                     bias (C_out, d); y_o = sum_i w_io * x_i per tap (weight still on the left)

This module is the public entry points and their argument checks.  How a call is computed is a method
(runtime.methods: block, fold, bilinear, kernel, auto; the table there says what each costs); when the
generated kernels run instead of a torch path is runtime.kernels.choice.  The method in force: a per-call /
per-layer `method=` wins over the global default (`set_default_method`, `default_method(...)`; initially
"auto"); `force_method(...)` overrides both.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import methods
from .checks import autocast_dtype, require_real_floating
from .kernels import choice
from .learned_algebra import LearnedAlgebra, LearnedSpec, describe, is_learned
from .methods import learned_fn
from .methods import (METHODS, ConvGeometry, default_method, force_method, get_default_method, set_default_method)
from .registry import Algebra, AlgebraNotBuiltError, FoldPlan, load_algebra

__all__ = [
    "METHODS", "PAD_MODES", "ConvGeometry", "algebra_linear", "algebra_conv1d", "algebra_conv2d", "algebra_conv3d",
    "algebra_conv_transpose1d", "algebra_conv_transpose2d", "algebra_conv_transpose3d",
    "conv_transpose_output_padding", "check_output_padding", "linear_stepper", "linear_impl", "conv_impl",
    "conv_transpose_impl", "ntuple", "conv_padding", "symmetric_pads", "check_padding_mode", "resolve_algebra",
    "set_default_method", "get_default_method", "default_method", "force_method",
    "method_costs", "choose_method", "fold_info", "structure_scale",
]

PAD_MODES = ("zeros", "reflect", "replicate", "circular")


def method_costs(algebra, **shape) -> dict[str, float]:
    """Modelled cost (MAC-equivalents) of one forward pass for each torch path (runtime.methods.cost).

    shape: rows (GEMM rows: batch for linear, batch * output positions for conv, batch * input positions for a
    transposed conv), in_elems / out_elems (channels in algebra elements), groups, kernel (taps per row),
    in_positions / out_positions (batch * input / output positions; conv), weight_grad (the weight expansion /
    combinations are recomputed per call, as in training), complex_ok (float32 / float64, no autocast, not
    exporting to ONNX: otherwise the complex method is not a candidate)."""
    return methods.method_costs(load_algebra(algebra), **shape)


def choose_method(algebra, **shape) -> str:
    """The method `auto` picks for these sizes (see `method_costs`); ties go to block, then fold."""
    return methods.choose_method(load_algebra(algebra), **shape)


def fold_info(algebra) -> FoldPlan:
    """The fold plan the build found for an algebra (m identical blocks of size p; m == 1: no folding)."""
    return load_algebra(algebra).fold


def structure_scale(algebra) -> float:
    """s = mean_k sum_ij T[i,j,k]^2: Var(y_k) = fan_in * s * Var(w) * Var(x) for independent components
    (a learned algebra's current T)."""
    T = describe(algebra).structure
    return float(np.mean(np.einsum("ijk,ijk->k", T, T)))


def _torch_path(requested: str, A: Algebra, weight: torch.Tensor, **shape) -> str:
    """The torch path a call runs: the requested one, or for "auto" / a "kernel" that could not run, auto's
    (told whether the call may run torch's complex ops: float32 / float64, no autocast, not exporting to ONNX)."""
    if requested not in ("auto", "kernel"):
        return requested
    complex_ok = (weight.dtype in (torch.float32, torch.float64) and autocast_dtype(weight.device.type) is None
                  and not choice.exporting())
    return methods.choose_cached(A, complex_ok=complex_ok, **shape)


def _learned_path(A, requested: str, input_elements: int, weight_elements: int, who: str) -> str:
    """The path of a learned-algebra call (runtime.methods.learned_fn): the one the method names, or the cheaper
    by the work on T.  A LearnedSpec has no structure yet: only layers (which own one) can run."""
    if not isinstance(A, LearnedAlgebra):
        raise TypeError(f"{who}: the learned algebra {A.name} has no structure tensor yet; build a layer with "
                        f"algebra={A.name!r} (it owns one), or pass a runtime.learned_algebra.LearnedAlgebra module")
    path = learned_fn.resolve_path(requested, A.name, who)
    return path if path is not None else learned_fn.choose_path(input_elements, weight_elements)


# ------------------------------------------------------------------------------------------ checks
def resolve_algebra(algebra, who: str) -> Algebra | LearnedSpec | LearnedAlgebra:
    """The algebra `algebra` stands for: the built Algebra of a name or an Algebra; for a learned algebra
    (runtime.learned_algebra) its LearnedSpec ("PHM<d>", learned(d)) or the LearnedAlgebra module passed.  A clear
    error naming `who` otherwise."""
    if algebra is None:
        raise TypeError(f"{who}: pass algebra= (a name such as 'H' or an Algebra from runtime.load_algebra)")
    if isinstance(algebra, (Algebra, LearnedSpec, LearnedAlgebra)):
        return algebra
    if not isinstance(algebra, str):
        raise TypeError(f"{who}: algebra must be a name such as 'H', an Algebra or runtime.learned(d), got "
                        f"{type(algebra).__name__} {algebra!r}")
    try:
        return describe(algebra)
    except AlgebraNotBuiltError as e:
        raise AlgebraNotBuiltError(f"{who}: {e}") from e


def _check_tensors(who: str, x: torch.Tensor, weight: torch.Tensor, bias, allow_autocast: bool = True) -> None:
    require_real_floating(x, who)
    if x.device != weight.device:
        raise RuntimeError(f"{who}: input is on {x.device} but the weight is on {weight.device}; move one of them "
                           f"(e.g. layer.to({str(x.device)!r}) or x.to({str(weight.device)!r}))")
    if bias is not None and bias.device != weight.device:
        raise RuntimeError(f"{who}: bias is on {bias.device} but the weight is on {weight.device}")
    if x.dtype != weight.dtype and not (allow_autocast and autocast_dtype(x.device.type) is not None):
        raise TypeError(f"{who}: input dtype {x.dtype} does not match weight dtype {weight.dtype}; cast the input "
                        f"(x.to({weight.dtype})) or the layer (layer.to({x.dtype})), or run under torch.autocast")


def ntuple(v, n: int, name: str, who: str) -> tuple[int, ...]:
    """An int or a tuple of n ints (or of 1, repeated) as an n-tuple; a clear error naming `who` otherwise."""
    if isinstance(v, int):
        return (v,) * n
    t = tuple(v)
    if len(t) == 1:
        t = t * n
    if len(t) != n or not all(isinstance(i, int) for i in t):
        raise ValueError(f"{who}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


# ------------------------------------------------------------------------------------------- linear
def linear_impl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra, method: str | None,
                who: str) -> torch.Tensor:
    """algebra_linear with the algebra resolved; `who` names the caller in error messages."""
    d = A.dim
    _check_tensors(who, x, weight, bias)
    if weight.dim() != 3 or weight.shape[-1] != d:
        raise ValueError(f"{who}: weight must have shape (out_features, in_features, d={d}) for algebra {A.name}, "
                         f"got {tuple(weight.shape)}")
    out, inn = weight.shape[0], weight.shape[1]
    if bias is not None and tuple(bias.shape) != (out, d):
        raise ValueError(f"{who}: bias must have shape (out_features, d) = ({out}, {d}), got {tuple(bias.shape)}")
    if x.dim() == 0 or x.shape[-1] != inn * d:
        n = x.shape[-1] if x.dim() else None
        if n is not None and n % d:
            raise ValueError(f"{who}: input has {n} features in its last dimension, which is not a multiple of the "
                             f"algebra dimension d={d} ({A.name}); inputs are (..., in_features*d) = "
                             f"(..., {inn * d}) with component k of element c at index c*d+k")
        got = "no feature dimension" if n is None else f"{n // d} elements"
        raise ValueError(f"{who}: expected {inn * d} input features ({inn} elements x d={d}), got {n} ({got}); "
                         f"make the input's last dimension {inn * d}, or build the layer with "
                         f"in_features={n // d if n else '...'}")
    lead = x.shape[:-1]
    flat = x.dim() == 2                   # (N, in*d) already: no reshapes (~1 us each at batch 1)
    x2 = x if flat else x.reshape(-1, inn * d)
    N = x2.shape[0]
    requested = methods.requested(method, who)
    if is_learned(A):
        path = _learned_path(A, requested, N * inn, out * inn, who)
        return learned_fn.linear(x2, weight, bias, A, path).reshape(*lead, out * d)
    kernel = choice.dense_kernel(requested, A, x2, weight, bias, N)
    if kernel is not None:                # generated kernel (inference, small batch)
        y = kernel(A, weight, x2, bias)
        return y if flat else y.reshape(*lead, out * d)
    path = _torch_path(requested, A, weight, rows=N, in_elems=inn, out_elems=out,
                       weight_grad=torch.is_grad_enabled() and weight.requires_grad)
    return methods.get(path).linear(weight, bias, A)(x2).reshape(*lead, out * d)


def linear_stepper(weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra, method: str | None, rows: int,
                   who: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """`h -> algebra_linear(h, weight, bias)` for a recurrence that applies one weight to many inputs of
    `rows` rows within a forward pass (a recurrent layer's hidden projection): the method is resolved once
    and the weight-side work (block expansion, scheme combinations) is done once, with autograd, not per step.

    weight (out, in, d), bias (out, d) or None; the returned callable maps (rows, in*d) -> (rows, out*d)."""
    if is_learned(A):
        path = _learned_path(A, methods.requested(method, who), rows * weight.shape[1], weight.numel() // A.dim, who)
        return learned_fn.linear_step(weight, bias, A, path)
    # the weight work is amortised over the steps: cost the per-step GEMMs only
    path = _torch_path(methods.requested(method, who), A, weight, rows=rows, in_elems=weight.shape[1],
                       out_elems=weight.shape[0], weight_grad=False)
    return methods.get(path).linear(weight, bias, A)


def algebra_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, algebra=None,
                   method: str | None = None) -> torch.Tensor:
    """y_o = sum_i weight_oi * x_i + bias_o over the algebra (weight on the left).

    x (..., in*d), weight (out, in, d), bias (out, d) or None -> (..., out*d).
    method: one of runtime.methods.METHODS ("auto", "block", "fold", "bilinear", "kernel") or None (the default).
    """
    A = resolve_algebra(algebra, "algebra_linear")
    return linear_impl(x, weight, bias, A, method, f"algebra_linear({A.name})")


# --------------------------------------------------------------------------------------------- conv
def _batched_conv_input(x: torch.Tensor, cin: int, nd: int, A: Algebra, who: str) -> tuple[torch.Tensor, bool]:
    """Check a conv input (N, cin*d, *spatial[nd]) or unbatched (cin*d, *spatial); return it batched and
    whether it was unbatched."""
    d = A.dim
    if x.dim() not in (nd + 1, nd + 2):
        raise ValueError(f"{who}: input must be (N, C_in*d, *spatial) with {nd} spatial dims (or unbatched), "
                         f"got shape {tuple(x.shape)}")
    unbatched = x.dim() == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    c = x.shape[1]
    if c != cin * d:
        if c % d:
            raise ValueError(f"{who}: input has {c} channels, which is not a multiple of the algebra dimension d={d} "
                             f"({A.name}); inputs are (N, in_channels*d, *spatial) = (N, {cin * d}, ...) with "
                             f"component k of element c at channel c*d+k")
        raise ValueError(f"{who}: expected {cin * d} input channels ({cin} elements x d={d}), got {c} "
                         f"({c // d} elements); make the input's channel dimension {cin * d}, or build the layer "
                         f"with in_channels={c // d}")
    return x, unbatched


def check_output_padding(output_padding, stride, dilation, who: str) -> None:
    """torch's rule for transposed convolutions: 0 <= output_padding < max(stride, dilation) per dim."""
    for op, st, dl in zip(output_padding, stride, dilation):
        if not 0 <= op < max(st, dl):
            raise ValueError(f"{who}: output_padding {tuple(output_padding)} must be smaller than either stride "
                             f"{tuple(stride)} or dilation {tuple(dilation)} (and not negative)")


def check_padding_mode(padding_mode: str, who: str) -> str:
    """`padding_mode` if it is one of PAD_MODES, else a clear error naming `who`."""
    if padding_mode not in PAD_MODES:
        raise ValueError(f"{who}: padding_mode must be one of {PAD_MODES}, got {padding_mode!r}")
    return padding_mode


def conv_padding(padding, nd: int, stride: tuple[int, ...], who: str) -> str | tuple[int, ...]:
    """A convolution's padding checked: 'valid', 'same' (stride 1 only, as in torch) or an nd-tuple of ints."""
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"{who}: padding must be 'valid', 'same', an int or a tuple, got {padding!r}")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError(f"{who}: padding='same' is not supported for strided convolutions")
        return padding
    return ntuple(padding, nd, "padding", who)


def symmetric_pads(padding: str | tuple[int, ...], kernel_size: Sequence[int],
                   dilation: Sequence[int]) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim of a checked `conv_padding`: 'valid' none, 'same' as torch pads
    (the odd extra after), a tuple on both sides."""
    if padding == "valid":
        return [(0, 0)] * len(kernel_size)
    if padding == "same":
        return [(dl * (k - 1) // 2, dl * (k - 1) - dl * (k - 1) // 2) for k, dl in zip(kernel_size, dilation)]
    return [(p, p) for p in padding]


def conv_impl(x, weight, bias, A: Algebra, nd: int, stride, padding, dilation, groups, padding_mode, method,
              who: str):
    d = A.dim
    _check_tensors(who, x, weight, bias)
    if weight.dim() != nd + 3 or weight.shape[-1] != d:
        raise ValueError(f"{who}: weight must have shape (C_out, C_in // groups, *kernel_size ({nd}), d={d}) for "
                         f"algebra {A.name}, got {tuple(weight.shape)}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{who}: groups must be a positive int, got {groups!r}")
    cout, cin_g = weight.shape[0], weight.shape[1]
    cin = cin_g * groups
    if cout % groups:
        raise ValueError(f"{who}: out_channels={cout} must be divisible by groups={groups}")
    if bias is not None and tuple(bias.shape) != (cout, d):
        raise ValueError(f"{who}: bias must have shape (out_channels, d) = ({cout}, {d}), got {tuple(bias.shape)}")
    x, unbatched = _batched_conv_input(x, cin, nd, A, who)
    padding_mode = check_padding_mode(padding_mode, who)
    stride = ntuple(stride, nd, "stride", who)
    dilation = ntuple(dilation, nd, "dilation", who)
    ksize = tuple(weight.shape[2:-1])
    pads = symmetric_pads(conv_padding(padding, nd, stride, who), ksize, dilation)
    if padding_mode == "zeros" and all(a == b for a, b in pads):
        padding = tuple(a for a, _ in pads)
    else:
        flat = [v for pair in reversed(pads) for v in pair]
        x = F.pad(x, flat, mode="constant" if padding_mode == "zeros" else padding_mode)
        padding = (0,) * nd
    N = x.shape[0]
    sp_in = x.shape[2:]
    sp_out = [(s + 2 * p - dl * (kk - 1) - 1) // st + 1
              for s, p, dl, kk, st in zip(sp_in, padding, dilation, ksize, stride)]
    if any(s <= 0 for s in sp_out):
        raise ValueError(f"{who}: input spatial size {tuple(sp_in)} is too small for kernel {ksize} with "
                         f"padding {padding} and dilation {dilation}")
    rows = N * math.prod(sp_out)
    requested = methods.requested(method, who)
    if is_learned(A):
        path = _learned_path(A, requested, N * math.prod(sp_in) * cin, weight.numel() // d, who)
        y = learned_fn.conv(x, weight, bias, A, ConvGeometry(nd, stride, padding, dilation, groups, False,
                                                              (0,) * nd), path)
        return y.squeeze(0) if unbatched else y
    # convolutions run the kernel only when asked: im2col costs more than it saves (docs/benchmarks.md)
    if requested == "kernel" and choice.cpu_kernel_applies("kernel", A, x, weight, bias, rows, groups):
        if any(padding):
            x = F.pad(x, [p for p in reversed(padding) for _ in range(2)])
        y = choice.cpu().conv_checked(A, weight, x, bias, stride, dilation)
        return y.squeeze(0) if unbatched else y
    path = _torch_path(requested, A, weight, rows=rows, in_elems=cin, out_elems=cout, groups=groups,
                       kernel=math.prod(ksize), in_positions=N * math.prod(sp_in),
                       weight_grad=torch.is_grad_enabled() and weight.requires_grad)
    geometry = ConvGeometry(nd, stride, padding, dilation, groups, False, (0,) * nd)
    y = methods.get(path).conv(x, weight, bias, A, geometry)
    return y.squeeze(0) if unbatched else y


def _conv_fn(nd: int):
    def fn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, algebra=None,
           stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
           dilation: int | Sequence[int] = 1, groups: int = 1, method: str | None = None, *,
           padding_mode: str = "zeros") -> torch.Tensor:
        A = resolve_algebra(algebra, f"algebra_conv{nd}d")
        return conv_impl(x, weight, bias, A, nd, stride, padding, dilation, groups, padding_mode, method,
                         f"algebra_conv{nd}d({A.name})")

    fn.__name__ = fn.__qualname__ = f"algebra_conv{nd}d"
    fn.__doc__ = (f"{nd}-D algebra convolution, weight left per tap.\n\n"
                  f"    x (N, C_in*d, *spatial[{nd}]) or unbatched, weight (C_out, C_in // groups, *kernel[{nd}], d),\n"
                  f"    bias (C_out, d) or None -> (N, C_out*d, *spatial').\n"
                  f"    stride / padding (int, tuple, 'same', 'valid') / dilation / groups as in torch; padding_mode\n"
                  f"    'zeros' | 'reflect' | 'replicate' | 'circular'; method as in algebra_linear.")
    return fn


algebra_conv1d = _conv_fn(1)
algebra_conv2d = _conv_fn(2)
algebra_conv3d = _conv_fn(3)


# ---------------------------------------------------------------------------------- transposed conv
def conv_transpose_output_padding(input_size: Sequence[int], output_size: Sequence[int], stride, padding,
                                  kernel_size, dilation, who: str) -> tuple[int, ...]:
    """The output_padding that makes a transposed convolution produce `output_size` (spatial sizes, or the
    full (N, C, *spatial) / (C, *spatial) shape), as torch.nn.ConvTranspose*d's forward(output_size=) does.
    input_size: the input's spatial sizes."""
    nd = len(input_size)
    output_size = tuple(int(s) for s in output_size)
    if len(output_size) in (nd + 1, nd + 2):
        output_size = output_size[-nd:]
    if len(output_size) != nd:
        raise ValueError(f"{who}: output_size must have {nd} spatial sizes (or the full output shape), "
                         f"got {output_size}")
    pads = []
    for i in range(nd):
        low = (input_size[i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel_size[i] - 1) + 1
        high = low + stride[i] - 1
        if not low <= output_size[i] <= high:
            raise ValueError(f"{who}: requested output size {output_size} is not reachable from input size "
                             f"{tuple(input_size)}: dimension {i} must lie in [{low}, {high}]")
        pads.append(output_size[i] - low)
    return tuple(pads)


def conv_transpose_impl(x, weight, bias, A: Algebra, nd: int, stride, padding, output_padding, groups, dilation,
                        padding_mode, method, who: str):
    """algebra_conv_transposeNd with the algebra resolved; `who` names the caller in error messages."""
    d = A.dim
    _check_tensors(who, x, weight, bias)
    if weight.dim() != nd + 3 or weight.shape[-1] != d:
        raise ValueError(f"{who}: weight must have shape (C_in, C_out // groups, *kernel_size ({nd}), d={d}) for "
                         f"algebra {A.name}, got {tuple(weight.shape)}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{who}: groups must be a positive int, got {groups!r}")
    if padding_mode != "zeros":
        raise ValueError(f"{who}: only padding_mode='zeros' is supported for transposed convolutions (as in "
                         f"torch), got {padding_mode!r}")
    cin, cout = weight.shape[0], weight.shape[1] * groups
    if cin % groups:
        raise ValueError(f"{who}: in_channels={cin} (the weight's first dimension) must be divisible by "
                         f"groups={groups}")
    if bias is not None and tuple(bias.shape) != (cout, d):
        raise ValueError(f"{who}: bias must have shape (out_channels, d) = ({cout}, {d}), got {tuple(bias.shape)}")
    x, unbatched = _batched_conv_input(x, cin, nd, A, who)
    if isinstance(padding, str):
        raise ValueError(f"{who}: padding must be an int or a tuple for transposed convolutions, got {padding!r}")
    stride = ntuple(stride, nd, "stride", who)
    padding = ntuple(padding, nd, "padding", who)
    dilation = ntuple(dilation, nd, "dilation", who)
    output_padding = ntuple(output_padding, nd, "output_padding", who)
    check_output_padding(output_padding, stride, dilation, who)
    ksize = tuple(weight.shape[2:-1])
    sp_in = x.shape[2:]
    sp_out = [(s - 1) * st - 2 * p + dl * (kk - 1) + op + 1
              for s, st, p, dl, kk, op in zip(sp_in, stride, padding, dilation, ksize, output_padding)]
    if any(s <= 0 for s in sp_out):
        raise ValueError(f"{who}: input spatial size {tuple(sp_in)} with kernel {ksize}, stride {stride}, "
                         f"padding {padding} and dilation {dilation} gives the empty output size {tuple(sp_out)}")
    N = x.shape[0]
    geometry = ConvGeometry(nd, stride, padding, dilation, groups, True, output_padding)
    if is_learned(A):
        path = _learned_path(A, methods.requested(method, who), N * math.prod(sp_in) * cin, weight.numel() // d, who)
        y = learned_fn.conv(x, weight, bias, A, geometry, path)
        return y.squeeze(0) if unbatched else y
    # as a GEMM: every input position meets all C_in/groups x C_out/groups x taps weight elements of its group
    path = _torch_path(methods.requested(method, who), A, weight, rows=N * math.prod(sp_in), in_elems=cin,
                       out_elems=cout, groups=groups, kernel=math.prod(ksize), out_positions=N * math.prod(sp_out),
                       weight_grad=torch.is_grad_enabled() and weight.requires_grad)
    y = methods.get(path).conv(x, weight, bias, A, geometry)
    return y.squeeze(0) if unbatched else y


def _conv_transpose_fn(nd: int):
    def fn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, algebra=None,
           stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
           output_padding: int | Sequence[int] = 0, groups: int = 1, dilation: int | Sequence[int] = 1,
           method: str | None = None) -> torch.Tensor:
        A = resolve_algebra(algebra, f"algebra_conv_transpose{nd}d")
        return conv_transpose_impl(x, weight, bias, A, nd, stride, padding, output_padding, groups, dilation,
                                   "zeros", method, f"algebra_conv_transpose{nd}d({A.name})")

    fn.__name__ = fn.__qualname__ = f"algebra_conv_transpose{nd}d"
    fn.__doc__ = (f"{nd}-D transposed algebra convolution, weight left per tap: y_o = sum_i w_io * x_i.\n\n"
                  f"    x (N, C_in*d, *spatial[{nd}]) or unbatched, weight (C_in, C_out // groups, *kernel[{nd}], d),\n"
                  f"    bias (C_out, d) or None -> (N, C_out*d, *spatial'), spatial' = (s-1)*stride - 2*padding\n"
                  f"    + dilation*(kernel-1) + output_padding + 1.  Arguments in the order of\n"
                  f"    torch.nn.functional.conv_transpose{nd}d; method as in algebra_linear.")
    return fn


algebra_conv_transpose1d = _conv_transpose_fn(1)
algebra_conv_transpose2d = _conv_transpose_fn(2)
algebra_conv_transpose3d = _conv_transpose_fn(3)
