"""Functional algebra layers: `algebra_linear`, `algebra_conv1d/2d/3d` and `algebra_conv_transpose1d/2d/3d`.

Layout (docs/design.md): an algebra tensor is a real tensor whose feature / channel dimension has size C*d,
element-major (component k of element c at index c*d + k).  The weight is the LEFT factor:

    algebra_linear:  x (..., in*d), weight (out, in, d), bias (out, d)        -> (..., out*d)
                     y_o = sum_i w_oi * x_i + b_o
    algebra_convNd:  x (N, C_in*d, *spatial) (or unbatched (C_in*d, *spatial)),
                     weight (C_out, C_in // groups, *kernel, d), bias (C_out, d)  -> (N, C_out*d, *spatial')
    algebra_conv_transposeNd:  x as above, weight (C_in, C_out // groups, *kernel, d) (torch's transposed layout),
                     bias (C_out, d); y_o = sum_i w_io * x_i per tap (weight still on the left)

Methods (all give the same result up to rounding):

    block     the reference path: expand the weight to the real matrix of left-multiplication blocks
              L(w) ((out*d) x (in*d)); one GEMM / conv, d^2 MACs per element pair.
    fold      when the left-regular representation splits into m identical blocks (found by the build from the
              structure tensor, see runtime/_fold.py; M_n(R): m = n), fold the m blocks of each activation
              into the batch: one GEMM / conv with d^2/m MACs per pair.  With m = 1 this IS the block path.
    bilinear  the verified rank-r scheme: r real GEMMs (one bmm / one grouped conv) on cached weight
              combinations and activation combinations, backward through the mode-permuted schemes
              (runtime/_bilinear.py): r MACs per pair in every pass.
    kernel    the generated CPU kernel (runtime.cpu; CUDA: runtime.cuda's gemv): one pass over the compact
              weight with the naive products (or the scheme's), for small batches and inference; linear, and
              convolutions with groups=1 through whole-element im2col.  See runtime/kernel_choice.py.
    auto      the cheapest of block / fold / bilinear by a cost model (`method_costs`): GEMM MACs scaled by a
              shape-efficiency factor, plus the memory traffic each method adds (fold's permute copies,
              bilinear's combination passes), in MAC-equivalents; on CPU at inference, the kernel for batches
              up to a measured crossover (runtime.kernel_choice), on CUDA the generated gemv for small batches.

Choosing: a per-call / per-layer `method=` wins over the global default (`set_default_method`,
`default_method(...)` context manager; initially "auto"); `force_method(...)` overrides both (e.g. to run
a whole model on the block reference path).
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import kernel_choice
from ._bilinear import BilinearConvFn, BilinearLinearFn, cached_weight, weight_combinations
from ._checks import require_real_floating
from ._fold import FoldConvFn, FoldLinearFn, fold_planar
from ._im2col import element_columns, from_rows
from .registry import Algebra, AlgebraNotBuiltError, FoldPlan, load_algebra

__all__ = [
    "METHODS", "algebra_linear", "algebra_conv1d", "algebra_conv2d", "algebra_conv3d",
    "algebra_conv_transpose1d", "algebra_conv_transpose2d", "algebra_conv_transpose3d",
    "conv_transpose_output_padding", "check_output_padding", "linear_stepper",
    "set_default_method", "get_default_method", "default_method", "force_method",
    "method_costs", "choose_method", "fold_info", "structure_scale",
]

METHODS = ("auto", "block", "fold", "bilinear", "kernel")

# ------------------------------------------------------------------------------------ method choice
_default = {"method": "auto"}
_local = threading.local()          # forced method (context manager), per thread


def _check_method(method: str, who: str = "method") -> str:
    if method not in METHODS:
        raise ValueError(f"{who}: unknown method {method!r}; choose one of {', '.join(map(repr, METHODS))}")
    return method


def set_default_method(method: str) -> None:
    """Method used by calls and layers that do not name one (method=None).  Initially "auto"."""
    _default["method"] = _check_method(method, "set_default_method")


def get_default_method() -> str:
    return _default["method"]


@contextlib.contextmanager
def default_method(method: str):
    """Temporarily change the default method (layers with an explicit method= keep theirs)."""
    old = _default["method"]
    set_default_method(method)
    try:
        yield
    finally:
        _default["method"] = old


@contextlib.contextmanager
def force_method(method: str):
    """Use `method` for every algebra layer call in this thread, overriding per-layer choices."""
    _check_method(method, "force_method")
    old = getattr(_local, "forced", None)
    _local.forced = method
    try:
        yield
    finally:
        _local.forced = old


# Cost model constants (MAC-equivalents).  _BETA: cost of moving one float through memory (read or write)
# relative to one GEMM MAC at full speed; _EDGE: dimension at which a GEMM runs at half efficiency along
# that axis; _OP: fixed cost of one op (~10 us of dispatch at ~50 GMAC/s).  Set from measurements on the
# benchmark machine (docs/benchmarks.md); only the ratios matter.  The fold and bilinear paths run a
# Python autograd.Function and about twice as many ops as block's one native GEMM, hence their op counts.
_BETA = 24.0
_EDGE = 24.0
_OP = 5.0e5
_OPS = {"block": 5, "fold": 12, "bilinear": 12}


def _gemm(M: float, K: float, N: float, batch: float = 1.0) -> float:
    eff = 1.0 / (1.0 + _EDGE / max(M, 1) + _EDGE / max(K, 1) + _EDGE / max(N, 1))
    return batch * (M * K * N / eff + _OP)


def method_costs(algebra, *, rows: int, in_elems: int, out_elems: int, groups: int = 1, kernel: int = 1,
                 in_positions: int | None = None, out_positions: int | None = None,
                 weight_grad: bool = True) -> dict[str, float]:
    """Modelled cost (MAC-equivalents) of one forward pass for each method.

    rows: GEMM rows (batch for linear, batch * output positions for conv, batch * input positions for a
    transposed conv); in_elems / out_elems: channels in algebra elements; kernel: taps per row;
    in_positions / out_positions: batch * input / output positions (conv; default rows);
    weight_grad: the weight expansion / combinations are recomputed per call (training) rather than cached.
    """
    A = load_algebra(algebra)
    d, r = A.dim, A.rank
    plan = A.fold
    g = max(groups, 1)
    kin = in_elems // g * kernel
    nout = out_elems // g
    act_in = (rows if in_positions is None else in_positions) * in_elems
    act_out = (rows if out_positions is None else out_positions) * out_elems
    wsize = out_elems * (in_elems // g) * kernel
    wfac = 1.0 if weight_grad else 0.0
    costs = {}
    costs["block"] = (_gemm(rows, kin * d, nout * d, g) + _BETA * d * (act_in + act_out)
                      + wfac * wsize * d * d * (d / 4 + 2 * _BETA) + _OPS["block"] * _OP)
    if plan.m > 1:
        m, p = plan.m, plan.p
        change = 0.0 if plan.change_in is None else (d + _BETA) * d * (act_in + act_out)   # F x, G y per element
        costs["fold"] = (_gemm(rows * m, kin * p, nout * p, g) + _BETA * d * 3 * (act_in + act_out) + change
                         + wfac * wsize * p * p * (d / 4 + 2 * _BETA) + _OPS["fold"] * _OP)
    else:
        costs["fold"] = costs["block"]
    costs["bilinear"] = (_gemm(rows, kin, nout, g * r) + _BETA * (act_in * (d + 2 * r) + act_out * (2 * r + d))
                         + wfac * wsize * r * (d / 4 + 2 * _BETA) + _OPS["bilinear"] * _OP)
    return costs


def choose_method(algebra, **shape) -> str:
    """The method `auto` picks for these sizes (see `method_costs`); ties go to block, then fold."""
    costs = method_costs(algebra, **shape)
    return min(("block", "fold", "bilinear"), key=lambda k: costs[k])


def _requested(method) -> str:
    """The method in force for a call: the forced one, else the call's / layer's, else the default."""
    forced = getattr(_local, "forced", None)
    return forced if forced is not None else (method if method is not None else _default["method"])


def _resolve_method(method, A: Algebra, who: str, **shape) -> str:
    """The torch path to run: block, fold or bilinear ("kernel" that could not run falls back like "auto")."""
    method = _check_method(_requested(method), who)
    if method in ("auto", "kernel"):
        method = _auto_cached(A, tuple(sorted(shape.items())))
    return method


def _auto_cached(A: Algebra, key) -> str:
    memo = A.cache.methods
    hit = memo.get(key)
    if hit is None:
        hit = choose_method(A, **dict(key))
        if len(memo) > 4096:
            memo.clear()
        memo[key] = hit
    return hit


# ----------------------------------------------------------------------------------------- constants
def fold_info(algebra) -> FoldPlan:
    """The fold plan the build found for an algebra (m identical blocks of size p; m == 1: no folding)."""
    return load_algebra(algebra).fold


def structure_scale(algebra) -> float:
    """s = mean_k sum_ij T[i,j,k]^2: Var(y_k) = fan_in * s * Var(w) * Var(x) for independent components."""
    T = load_algebra(algebra).structure
    return float(np.mean(np.einsum("ijk,ijk->k", T, T)))


class Consts(NamedTuple):
    """Per-algebra constant tensors: scheme U, V, W (r, d); block (d, d, d) with L(w)[t, s] = sum_a
    block[a,t,s] w_a; fold (d, p, p) the same for one folded block."""

    U: torch.Tensor
    V: torch.Tensor
    W: torch.Tensor
    block: torch.Tensor
    fold: torch.Tensor


def constants(A: Algebra, dtype: torch.dtype, device) -> Consts:
    """The constants in `dtype` on `device` (each made once from the float64 values, see Algebra.constant)."""
    return Consts(*(A.constant(k, dtype, device) for k in Consts._fields))


# ------------------------------------------------------------------------------------------ helpers
def resolve_algebra(algebra, who: str) -> Algebra:
    if algebra is None:
        raise TypeError(f"{who}: pass algebra= (a name such as 'H' or an Algebra from runtime.load_algebra)")
    if isinstance(algebra, Algebra):
        return algebra
    if not isinstance(algebra, str):
        raise TypeError(f"{who}: algebra must be a name such as 'H' or an Algebra, got {type(algebra).__name__} "
                        f"{algebra!r}")
    try:
        return load_algebra(algebra)
    except AlgebraNotBuiltError as e:
        raise AlgebraNotBuiltError(f"{who}: {e}") from e


def _autocast_dtype(device_type: str):
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except (TypeError, RuntimeError):
        pass
    return None


def _check_tensors(who: str, x: torch.Tensor, weight: torch.Tensor, bias, allow_autocast: bool = True) -> None:
    require_real_floating(x, who)
    if x.device != weight.device:
        raise RuntimeError(f"{who}: input is on {x.device} but the weight is on {weight.device}; move one of them "
                           f"(e.g. layer.to({str(x.device)!r}) or x.to({str(weight.device)!r}))")
    if bias is not None and bias.device != weight.device:
        raise RuntimeError(f"{who}: bias is on {bias.device} but the weight is on {weight.device}")
    if x.dtype != weight.dtype and not (allow_autocast and _autocast_dtype(x.device.type) is not None):
        raise TypeError(f"{who}: input dtype {x.dtype} does not match weight dtype {weight.dtype}; cast the input "
                        f"(x.to({weight.dtype})) or the layer (layer.to({x.dtype})), or run under torch.autocast")


def _expand(w: torch.Tensor, Tb: torch.Tensor, planar: bool = False) -> torch.Tensor:
    """w (O, I, *k, d), Tb (d, p, p) -> (O*p, I*p, *k): the real weight of blocks B(w_oi)[t,s] = sum_a Tb[a,t,s] w_a,
    rows (o, t) and columns (i, s); planar=True: rows (t, o) and columns (s, i) (see runtime._fold.fold_planar)."""
    O, I = w.shape[0], w.shape[1]
    k = w.shape[2:-1]
    d = w.shape[-1]
    p = Tb.shape[1]
    K = math.prod(k)
    B = torch.matmul(w.reshape(O * I * K, d), Tb.to(w.dtype).reshape(d, p * p)).view(O, I, K, p, p)
    return B.permute(*((3, 0, 4, 1, 2) if planar else (0, 3, 1, 4, 2))).reshape(O * p, I * p, *k)


def _expanded_weight(weight: torch.Tensor, Tb: torch.Tensor, tag, A: Algebra, planar: bool = False) -> torch.Tensor:
    if torch.is_grad_enabled() and weight.requires_grad:
        return _expand(weight, Tb, planar)
    return cached_weight(weight, (tag, A, weight.dtype), lambda: _expand(weight.detach(), Tb, planar))


def _fold_weight(weight: torch.Tensor, Tb: torch.Tensor, A: Algebra, plan: FoldPlan, conv) -> torch.Tensor:
    """The real weight of the block (plan.m == 1) or folded path, in the layout that path's activations use."""
    planar = fold_planar(plan, conv is not None)
    tag = (("block" if plan.m == 1 else "fold") + ("_t" if conv is not None and conv[5] else "")
           + ("_planar" if planar else ""))
    return _expanded_weight(weight, Tb, tag, A, planar)


_BLOCK_PLAN = FoldPlan(1, 0, (), np.zeros(0), None, None, None)    # m == 1: the one-GEMM block path


def _fold_forward(x, weight, bias, A, plan, Tb, conv, B=None):
    """Block (plan.m == 1: one real GEMM / conv with autograd, the reference path) or folded path (plan.m > 1:
    FoldLinearFn / FoldConvFn).  `conv` is None (linear, x 2-D) or a conv spec (nd, stride, padding, dilation,
    groups, transposed, output_padding); for a transposed conv Tb is the transposed block tensor, so that B
    has torch's (C_in*p, C_out/groups*p, *k) layout.  B: the expanded weight when the caller already has it
    (`linear_stepper`)."""
    d = A.dim
    if B is None:
        B = _fold_weight(weight, Tb, A, plan, conv)
    if plan.m == 1:
        b = None if bias is None else bias.reshape(-1)
        if conv is None:
            return F.linear(x, B, b)
        nd, stride, padding, dilation, groups, transposed, output_padding = conv
        if transposed:
            return (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1](
                x, B, b, stride, padding, output_padding, groups, dilation)
        return (F.conv1d, F.conv2d, F.conv3d)[nd - 1](x, B, b, stride, padding, dilation, groups)
    C_in = x.shape[1] // d
    dev = x.device.type
    ac = _autocast_dtype(dev)
    if ac is not None:
        x, B = x.to(ac), B.to(ac)
    ctx = torch.autocast(dev, enabled=False) if ac is not None else contextlib.nullcontext()
    with ctx:
        if conv is None:
            return FoldLinearFn.apply(x.contiguous(), B, bias, plan, C_in, weight.shape[0])
        nd, stride, padding, dilation, groups, transposed, output_padding = conv
        C_out = weight.shape[1] * groups if transposed else weight.shape[0]
        return FoldConvFn.apply(x.contiguous(), B, bias, plan, C_in, C_out, stride, padding, dilation, groups,
                                transposed, output_padding)


def _bilinear_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the bilinear GEMMs run in: the autocast dtype, else the input's."""
    ac = _autocast_dtype(x.device.type)
    return ac if ac is not None else x.dtype


def _bilinear_weight(weight, A: Algebra, consts: Consts, conv, cdtype) -> torch.Tensor:
    """The scheme's weight combinations U . weight in the compute dtype: (r, O, I) for linear, stacked
    term-major (r*W0, W1, *k) for a conv (W0, W1 the weight's first two dims).  Cached until the weight
    changes, except while training (the weight changes every step, and gradcheck perturbs .data)."""
    Uw = consts.U.to(weight.dtype)

    def make():
        return weight_combinations(weight.detach(), Uw, conv is not None).to(cdtype).contiguous()

    if torch.is_grad_enabled() and weight.requires_grad:
        return make()
    return cached_weight(weight, ("bilinear", A, cdtype), make)


def _bilinear_forward(x, weight, bias, A, consts: Consts, conv, wc=None):
    """The bilinear path; wc: the weight combinations when the caller already has them (`linear_stepper`)."""
    dev = x.device.type
    ac = _autocast_dtype(dev)
    cdtype = _bilinear_dtype(x)
    U, V, Wm = (t.to(cdtype) for t in (consts.U, consts.V, consts.W))
    if wc is None:
        wc = _bilinear_weight(weight, A, consts, conv, cdtype)
    if x.dtype != cdtype:
        x = x.to(cdtype)
    ctx = torch.autocast(dev, enabled=False) if ac is not None else contextlib.nullcontext()
    with ctx:
        if conv is None:
            return BilinearLinearFn.apply(x.contiguous(), weight, bias, wc, U, V, Wm)
        nd, stride, padding, dilation, groups, transposed, output_padding = conv
        return BilinearConvFn.apply(x.contiguous(), weight, bias, wc, U, V, Wm, stride, padding, dilation, groups,
                                    transposed, output_padding)


def _conv_dispatch(method: str, x, weight, bias, A: Algebra, consts: Consts, spec) -> torch.Tensor:
    """Run a (transposed) convolution with a resolved method: the one place where a conv method plugs in.
    spec: (nd, stride, padding, dilation, groups, transposed, output_padding), padding already symmetric."""
    if method == "bilinear":
        return _bilinear_forward(x, weight, bias, A, consts, spec)
    plan, Tb = (A.fold, consts.fold) if method == "fold" else (_BLOCK_PLAN, consts.block)
    return _fold_forward(x, weight, bias, A, plan, Tb.transpose(1, 2) if spec[5] else Tb, spec)


# ------------------------------------------------------------------------------------------- linear
def linear_impl(x, weight, bias, A: Algebra, method, who: str):
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
    if _gemv_kernel_applies(method, A, x2, weight, bias, N):      # auto, CUDA, small batch: generated kernel
        from . import cuda as _cuda
        return _cuda.gemv(A, weight, x2, bias).reshape(*lead, out * d)
    if kernel_choice.cpu_kernel_applies(_check_method(_requested(method), who), A, x2, weight, bias, N):
        y = kernel_choice.cpu().dense_checked(A, weight, x2, bias)   # CPU kernel (inference, small batch)
        return y if flat else y.reshape(*lead, out * d)
    wg = torch.is_grad_enabled() and weight.requires_grad
    method = _resolve_method(method, A, who, rows=N, in_elems=inn, out_elems=out, weight_grad=wg)
    return linear_stepper(weight, bias, A, method, N, who, resolved=True)(x2).reshape(*lead, out * d)


def linear_stepper(weight: torch.Tensor, bias: torch.Tensor | None, A: Algebra, method, rows: int, who: str,
                   resolved: bool = False):
    """`h -> algebra_linear(h, weight, bias)` for a recurrence that applies one weight to many inputs of
    `rows` rows within a forward pass (a recurrent layer's hidden projection): the method is resolved once
    and the weight-side work (block expansion, scheme combinations) is done once, with autograd, not per step.

    weight (out, in, d), bias (out, d) or None; the returned callable maps (rows, in*d) -> (rows, out*d).
    resolved: `method` is already a concrete method (linear_impl resolved it for one call)."""
    out, inn = weight.shape[0], weight.shape[1]
    consts = constants(A, weight.dtype, weight.device)
    if not resolved:   # the weight work is amortised over the steps: cost the per-step GEMMs only
        method = _resolve_method(method, A, who, rows=rows, in_elems=inn, out_elems=out, weight_grad=False)
    if method == "bilinear":
        wc = _bilinear_weight(weight, A, consts, None, _bilinear_dtype(weight))
        return lambda h: _bilinear_forward(h, weight, bias, A, consts, None, wc)
    plan, Tb = (A.fold, consts.fold) if method == "fold" else (_BLOCK_PLAN, consts.block)
    B = _fold_weight(weight, Tb, A, plan, None)
    return lambda h: _fold_forward(h, weight, bias, A, plan, Tb, None, B)


def _gemv_kernel_applies(method, A: Algebra, x2, weight, bias, N: int) -> bool:
    """`auto` on CUDA tensors with the generated kernels available (runtime.cuda, needs CuPy): batches that
    the gemv kernel serves in one pass over the compact weights go to it (memory-bound case)."""
    if not x2.is_cuda:
        return False
    if (_requested(method) not in ("auto", "kernel") or torch.is_autocast_enabled("cuda")
            or kernel_choice.has_tangent(x2, weight, bias) or kernel_choice.exporting()):
        return False
    from . import cuda as _cuda
    return (_cuda.kernels_available(x2) and x2.dtype == weight.dtype and weight.device == x2.device
            and weight.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and (bias is None or bias.dtype == weight.dtype) and 0 < N <= _cuda.max_gemv_batch(A))


def algebra_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, algebra=None,
                   method: str | None = None) -> torch.Tensor:
    """y_o = sum_i weight_oi * x_i + bias_o over the algebra (weight on the left).

    x (..., in*d), weight (out, in, d), bias (out, d) or None -> (..., out*d).
    method: "auto" | "block" | "fold" | "bilinear" | "kernel" | None (the global default).
    """
    A = resolve_algebra(algebra, "algebra_linear")
    return linear_impl(x, weight, bias, A, method, f"algebra_linear({A.name})")


# --------------------------------------------------------------------------------------------- conv
def _ntuple(v, n: int, name: str, who: str) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    t = tuple(v)
    if len(t) == 1:
        t = t * n
    if len(t) != n or not all(isinstance(i, int) for i in t):
        raise ValueError(f"{who}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


_PAD_MODES = ("zeros", "reflect", "replicate", "circular")


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
    if padding_mode not in _PAD_MODES:
        raise ValueError(f"{who}: padding_mode must be one of {_PAD_MODES}, got {padding_mode!r}")
    stride = _ntuple(stride, nd, "stride", who)
    dilation = _ntuple(dilation, nd, "dilation", who)
    ksize = tuple(weight.shape[2:-1])
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{who}: padding='same' is not supported for strided convolutions")
            pads = []
            for kk, dl in zip(ksize, dilation):
                total = dl * (kk - 1)
                pads.append((total // 2, total - total // 2))
        else:
            raise ValueError(f"{who}: padding must be 'valid', 'same', an int or a tuple, got {padding!r}")
    else:
        pads = [(p, p) for p in _ntuple(padding, nd, "padding", who)]
    if padding_mode == "zeros" and all(a == b for a, b in pads):
        padding = tuple(a for a, _ in pads)
    else:
        flat = [v for pair in reversed(pads) for v in pair]
        x = F.pad(x, flat, mode="constant" if padding_mode == "zeros" else padding_mode)
        padding = (0,) * nd
    consts = constants(A, weight.dtype, weight.device)
    N = x.shape[0]
    sp_in = x.shape[2:]
    sp_out = [(s + 2 * p - dl * (kk - 1) - 1) // st + 1
              for s, p, dl, kk, st in zip(sp_in, padding, dilation, ksize, stride)]
    if any(s <= 0 for s in sp_out):
        raise ValueError(f"{who}: input spatial size {tuple(sp_in)} is too small for kernel {ksize} with "
                         f"padding {padding} and dilation {dilation}")
    rows = N * math.prod(sp_out)
    # convolutions run the kernel only when asked: im2col costs more than it saves (docs/benchmarks.md)
    if (_check_method(_requested(method), who) == "kernel"
            and kernel_choice.cpu_kernel_applies("kernel", A, x, weight, bias, rows, groups)):
        y = _conv_kernel(x, weight, bias, A, padding, stride, dilation, ksize)
        return y.squeeze(0) if unbatched else y
    wg = torch.is_grad_enabled() and weight.requires_grad
    method = _resolve_method(method, A, who, rows=rows, in_elems=cin, out_elems=cout,
                             groups=groups, kernel=math.prod(ksize), in_positions=N * math.prod(sp_in),
                             weight_grad=wg)
    y = _conv_dispatch(method, x, weight, bias, A, consts, (nd, stride, padding, dilation, groups, False, (0,) * nd))
    return y.squeeze(0) if unbatched else y


def _conv_kernel(x, weight, bias, A: Algebra, padding, stride, dilation, ksize):
    """A groups=1 convolution through the CPU kernel: whole-element im2col rows times the (C_out, C_in*K, d)
    weight.  x (N, C_in*d, *S) with `padding` (symmetric zeros) still to apply."""
    from . import cpu as _cpu

    if any(padding):
        x = F.pad(x, [p for p in reversed(padding) for _ in range(2)])
    X, out_sp = element_columns(x, A.dim, ksize, stride, dilation)
    y = _cpu.dense(A, weight.reshape(weight.shape[0], -1, A.dim), X.reshape(X.shape[0], -1), bias)
    return from_rows(y.reshape(X.shape[0], weight.shape[0], A.dim), x.shape[0], out_sp)


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
    stride = _ntuple(stride, nd, "stride", who)
    padding = _ntuple(padding, nd, "padding", who)
    dilation = _ntuple(dilation, nd, "dilation", who)
    output_padding = _ntuple(output_padding, nd, "output_padding", who)
    check_output_padding(output_padding, stride, dilation, who)
    ksize = tuple(weight.shape[2:-1])
    sp_in = x.shape[2:]
    sp_out = [(s - 1) * st - 2 * p + dl * (kk - 1) + op + 1
              for s, st, p, dl, kk, op in zip(sp_in, stride, padding, dilation, ksize, output_padding)]
    if any(s <= 0 for s in sp_out):
        raise ValueError(f"{who}: input spatial size {tuple(sp_in)} with kernel {ksize}, stride {stride}, "
                         f"padding {padding} and dilation {dilation} gives the empty output size {tuple(sp_out)}")
    consts = constants(A, weight.dtype, weight.device)
    N = x.shape[0]
    wg = torch.is_grad_enabled() and weight.requires_grad
    # as a GEMM: every input position meets all C_in/groups x C_out/groups x taps weight elements of its group
    method = _resolve_method(method, A, who, rows=N * math.prod(sp_in), in_elems=cin, out_elems=cout,
                             groups=groups, kernel=math.prod(ksize), out_positions=N * math.prod(sp_out),
                             weight_grad=wg)
    spec = (nd, stride, padding, dilation, groups, True, output_padding)
    y = _conv_dispatch(method, x, weight, bias, A, consts, spec)
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
