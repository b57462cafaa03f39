"""Element pruning: remove whole algebra elements (all d components of a weight entry) by their norm.

    from runtime import sparsity
    sparsity.prune_elements_(model, 0.8)                       # one shot, exactly round(0.8 n) per layer
    pruner = sparsity.GradualPruner(model, 0.9, start_step=100, end_step=1000, frequency=50)
    for step in ...: ...; optimizer.step(); pruner.step()     # Zhu & Gupta cubic schedule
    print(sparsity.format_report(model))
    fast = sparsity.to_block_sparse(model.fc)                  # block-CSR inference form, same outputs (the dense
                                                               # layer itself where that is faster: sparse_max_density)

Masks are `torch.nn.utils.parametrize` parametrizations (`ElementMask`, a boolean buffer of shape
weight.shape[:-1]): the layer sees weight = original * mask, gradients of pruned elements are zero, the
mask is part of `state_dict()` (``parametrizations.weight.0.mask``) and `torch.compile` traces it like any
buffer.  `load_pruned_state_dict(model, sd)` restores masks into a fresh (unpruned) model first.

Block-CSR element-sparse form (shared with the CPU and CUDA kernels): ``crow_indices`` int64 (out + 1,),
``col_indices`` int64 (nnz,) (int32 as the inference layers store it), ``values`` (nnz, d);  y[b, o] = sum_{p in row o} values[p] * x[b, col[p]] + bias[o]
with the weight on the left.  For convolutions the rows are output channels and the columns index the
flattened (C_in // groups, *kernel) im2col elements of the row's group.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .kernels import choice
from .functional import check_padding_mode, conv_padding, symmetric_pads
from .im2col import element_columns, from_rows
from .init import algebra_layers, is_algebra_layer
from .checks import require_real_floating
from .learned_algebra import is_learned
from .registry import load_algebra

__all__ = [
    "ElementMask", "element_norms", "prunable_layers", "get_mask", "set_mask_", "is_pruned", "raw_weight",
    "prune_elements_", "cubic_sparsity", "GradualPruner", "LayerSparsity", "sparsity_report", "format_report",
    "remove_pruning_", "load_pruned_state_dict", "block_csr", "to_block_sparse", "convert_to_block_sparse",
    "sparse_max_density", "element_sparsity", "SPARSE_MAX_DENSITY",
    "BlockSparseAlgebraLinear", "BlockSparseAlgebraConv",
]


class ElementMask(nn.Module):
    """Parametrization weight -> weight * mask[..., None]; `mask` is a bool buffer over the elements."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool).clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask.unsqueeze(-1).to(weight.dtype)

    def extra_repr(self) -> str:
        n = self.mask.numel()
        return f"elements={n}, kept={int(self.mask.sum())}"


# ---- inspecting layers -----------------------------------------------------------------------------

def element_norms(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of every element: (..., d) -> (...)."""
    return weight.detach().float().square().sum(-1).sqrt()


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Algebra layers (modules with `algebra` and an algebra-shaped `weight`); a lone layer gives ('', layer)."""
    return list(algebra_layers(model))


def _mask_module(m: nn.Module) -> ElementMask | None:
    if parametrize.is_parametrized(m, "weight"):
        for p in m.parametrizations.weight:
            if isinstance(p, ElementMask):
                return p
    return None


def is_pruned(m: nn.Module) -> bool:
    return _mask_module(m) is not None


def get_mask(m: nn.Module) -> torch.Tensor | None:
    """The layer's boolean element mask (True = kept), or None if it was never pruned."""
    pm = _mask_module(m)
    return None if pm is None else pm.mask


def raw_weight(m: nn.Module) -> torch.Tensor:
    """The trainable weight tensor (the parametrization's original when pruned)."""
    if parametrize.is_parametrized(m, "weight"):
        return m.parametrizations.weight.original
    return m.weight


def require_algebra_layer(m, who: str) -> nn.Module:
    """`m` itself when it is an algebra layer (runtime.init.is_algebra_layer); else a TypeError naming `who` and
    what was passed (a plain nn.Linear has no elements to prune or store sparsely)."""
    if not is_algebra_layer(m):
        raise TypeError(f"{who}: {type(m).__name__} is not an algebra layer (AlgebraLinear, AlgebraConv*, ...: a "
                        f"module with an `algebra` and a weight of shape (..., d)); got {_describe(m)}")
    return m


def _describe(m) -> str:
    text = repr(m) if isinstance(m, nn.Module) else f"{type(m).__name__} {m!r}"
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def set_mask_(m: nn.Module, mask: torch.Tensor) -> nn.Module:
    """Install or replace the element mask of layer `m` (shape weight.shape[:-1])."""
    require_algebra_layer(m, "set_mask_")
    w = raw_weight(m)
    if tuple(mask.shape) != tuple(w.shape[:-1]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the weight's elements {tuple(w.shape[:-1])}")
    pm = _mask_module(m)
    if pm is None:
        parametrize.register_parametrization(m, "weight", ElementMask(mask.to(w.device)))
    else:
        pm.mask.copy_(mask.to(pm.mask.device, torch.bool))
    return m


def _select(model_or_layers) -> list[tuple[str, nn.Module]]:
    """A model (all its algebra layers), or a list of layers or of (name, layer) pairs."""
    if isinstance(model_or_layers, nn.Module):
        layers = prunable_layers(model_or_layers)
    else:
        layers = [item if isinstance(item, tuple) else (str(i), item) for i, item in enumerate(model_or_layers)]
        for _, m in layers:
            require_algebra_layer(m, "prune_elements_")
    if not layers:
        raise ValueError("no algebra layers to prune")
    return layers


# ---- one-shot magnitude pruning ------------------------------------------------------------------------

def _n_prune(sparsity: float, n: int) -> int:
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return min(n, int(math.floor(sparsity * n + 0.5)))


def _scores(m: nn.Module) -> torch.Tensor:
    """Element norms of the effective weight; already-pruned elements score -1 so they stay pruned."""
    s = element_norms(raw_weight(m))
    mask = get_mask(m)
    if mask is not None:
        s = torch.where(mask, s, torch.full_like(s, -1.0))
    return s


def _mask_from_scores(scores: torch.Tensor, k: int) -> torch.Tensor:
    flat = scores.flatten()
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        order = torch.argsort(flat, stable=True)
        keep[order[:k]] = False
    return keep.view_as(scores)


@torch.no_grad()
def prune_elements_(model_or_layers, sparsity: float, scope: str = "layer") -> dict[str, torch.Tensor]:
    """Prune whole elements with the smallest norms so that exactly round(sparsity * n) elements are zero.

    scope="layer": n counts each layer's elements; scope="global": all selected layers share one
    threshold and n counts every element.  Pruning never revives an element pruned before.
    Returns {layer name: mask}.
    """
    layers = _select(model_or_layers)
    if scope == "layer":
        masks = {}
        for name, m in layers:
            s = _scores(m)
            masks[name] = _mask_from_scores(s, _n_prune(sparsity, s.numel()))
            set_mask_(m, masks[name])
        return masks
    if scope != "global":
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    scores = [_scores(m) for _, m in layers]
    flat = torch.cat([s.flatten().cpu() for s in scores])
    keep = _mask_from_scores(flat, _n_prune(sparsity, flat.numel()))
    masks, at = {}, 0
    for (name, m), s in zip(layers, scores):
        masks[name] = keep[at:at + s.numel()].view(s.shape).to(s.device)
        at += s.numel()
        set_mask_(m, masks[name])
    return masks


# ---- gradual pruning ---------------------------------------------------------------------------------

def cubic_sparsity(step: int, final_sparsity: float, start_step: int, end_step: int,
                   initial_sparsity: float = 0.0) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t_end - t0))^3, clamped to [t0, t_end].

    Before start_step this is 0 (nothing pruned yet); from end_step on it is final_sparsity.
    """
    if step < start_step:
        return 0.0
    if end_step <= start_step or step >= end_step:
        return float(final_sparsity)
    frac = (step - start_step) / (end_step - start_step)
    return float(final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3)


class GradualPruner:
    """Raise element sparsity on the cubic schedule: masks are updated at start_step, every `frequency`
    steps after it, and at end_step (the n*dt grid of Zhu & Gupta, with end_step always included).

    Call `step()` once per training step (after the optimizer step) or `step(t)` with an explicit step.
    `state_dict()` / `load_state_dict()` save the step counter; the masks live in the model.
    """

    def __init__(self, model_or_layers, final_sparsity: float, start_step: int, end_step: int,
                 frequency: int = 1, initial_sparsity: float = 0.0, scope: str = "layer"):
        if frequency < 1:
            raise ValueError("frequency must be >= 1")
        if end_step < start_step:
            raise ValueError("end_step must be >= start_step")
        self.layers = _select(model_or_layers)
        self.final_sparsity, self.initial_sparsity = float(final_sparsity), float(initial_sparsity)
        self.start_step, self.end_step, self.frequency = int(start_step), int(end_step), int(frequency)
        self.scope = scope
        self.last_step = -1
        self.current_sparsity = 0.0

    def sparsity_at(self, step: int) -> float:
        return cubic_sparsity(step, self.final_sparsity, self.start_step, self.end_step, self.initial_sparsity)

    def is_update_step(self, step: int) -> bool:
        if step < self.start_step:
            return False
        if step >= self.end_step:
            return self.current_sparsity < self.final_sparsity or step == self.end_step
        return (step - self.start_step) % self.frequency == 0

    def step(self, step: int | None = None) -> bool:
        """Advance to `step` (default: previous + 1); prune if it is an update step. True if masks changed."""
        step = self.last_step + 1 if step is None else int(step)
        self.last_step = step
        if not self.is_update_step(step):
            return False
        target = self.sparsity_at(step)
        prune_elements_(self.layers, target, self.scope)
        self.current_sparsity = target
        return True

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "current_sparsity": self.current_sparsity}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self.current_sparsity = float(state["current_sparsity"])


# ---- reports --------------------------------------------------------------------------------------------

@dataclass
class LayerSparsity:
    name: str
    elements: int
    pruned: int
    d: int

    @property
    def sparsity(self) -> float:
        return self.pruned / self.elements if self.elements else 0.0

    @property
    def params(self) -> int:
        return self.elements * self.d

    @property
    def nonzero_params(self) -> int:
        return (self.elements - self.pruned) * self.d


def sparsity_report(model: nn.Module) -> list[LayerSparsity]:
    """Per algebra layer: elements, pruned elements (mask off, or exactly zero), sparsity."""
    out = []
    for name, m in prunable_layers(model):
        with torch.no_grad():
            w = m.weight
        zero = (w == 0).all(-1)
        mask = get_mask(m)
        if mask is not None:
            zero = zero | ~mask
        d = load_algebra(m.algebra).dim
        out.append(LayerSparsity(name or type(m).__name__, zero.numel(), int(zero.sum()), d))
    return out


def format_report(model_or_report) -> str:
    rep = sparsity_report(model_or_report) if isinstance(model_or_report, nn.Module) else model_or_report
    rows = [("layer", "elements", "pruned", "sparsity")]
    for r in rep:
        rows.append((r.name, str(r.elements), str(r.pruned), f"{100 * r.sparsity:.2f}%"))
    tot = sum(r.elements for r in rep)
    pr = sum(r.pruned for r in rep)
    rows.append(("total", str(tot), str(pr), f"{100 * pr / tot:.2f}%" if tot else "-"))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows)


# ---- checkpoints ----------------------------------------------------------------------------------------

@torch.no_grad()
def _masked_copy(layer: nn.Module) -> nn.Module:
    """An independent copy of the layer, its weight parameter holding the masked values (no mask; the layer
    itself is left as it is).  (A parametrized module cannot be deep-copied and then unparametrized: the copy
    shares its generated class.)"""
    if not is_pruned(layer):
        return copy.deepcopy(layer)
    base = type(layer).__bases__[0]                        # the class parametrize derived its own from
    plain = base.__new__(base)
    plain.__dict__.update(layer.__dict__)
    plain._modules = {k: v for k, v in layer._modules.items() if k != "parametrizations"}
    plain._parameters = dict(layer._parameters)
    plain._parameters["weight"] = nn.Parameter(layer.weight.detach().clone(),
                                               layer.parametrizations.weight.original.requires_grad)
    plain._buffers = dict(layer._buffers)
    return copy.deepcopy(plain)


def remove_pruning_(model: nn.Module) -> nn.Module:
    """Make pruning permanent: the weight parameters hold the masked values, the masks go away."""
    for _, m in prunable_layers(model):
        if is_pruned(m):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


def load_pruned_state_dict(model: nn.Module, state_dict: dict, strict: bool = True):
    """Load a checkpoint saved from a pruned model into `model`, installing the saved masks first."""
    suffix = ".parametrizations.weight.0.mask"
    for name, m in prunable_layers(model):
        key = (name + suffix) if name else suffix[1:]
        if key in state_dict:
            set_mask_(m, state_dict[key])
    return model.load_state_dict(state_dict, strict=strict)


# ---- block-CSR inference form ---------------------------------------------------------------------------

def block_csr(weight: torch.Tensor, mask: torch.Tensor | None = None):
    """(crow_indices, col_indices, values) of a (rows, ..., d) weight: rows = dim 0, columns = the rest.

    Elements that are masked off or exactly zero are dropped; columns are ascending within a row.
    """
    w = weight.detach().reshape(weight.shape[0], -1, weight.shape[-1])
    keep = (w != 0).any(-1)
    if mask is not None:
        keep = keep & mask.reshape(keep.shape).to(keep.device)
    rows, cols = keep.nonzero(as_tuple=True)                 # row-major order
    counts = torch.bincount(rows, minlength=w.shape[0])
    crow = torch.zeros(w.shape[0] + 1, dtype=torch.int64, device=w.device)
    crow[1:] = torch.cumsum(counts, 0)
    return crow, cols.to(torch.int64), w[rows, cols].clone()


def _cuda_bsr():
    """runtime.kernels.cuda (generated kernels, same block-CSR format) when importable, else None."""
    try:
        from .kernels import cuda
    except Exception:
        return None
    return cuda


class _BlockSparseBase(nn.Module):
    def _init_csr(self, algebra, crow, col, values, bias):
        self.algebra = load_algebra(algebra)
        if col.numel() and int(col.max()) >= 2 ** 31:
            raise ValueError(f"{type(self).__name__}: column index {int(col.max())} does not fit the kernels' int32 "
                             f"indices; the layer is too wide for the element-sparse form (keep it dense)")
        self.register_buffer("crow_indices", crow)
        # int32: the CPU kernel's index type, used as stored (no derived copy that an edit could leave stale)
        self.register_buffer("col_indices", col.to(torch.int32))
        self.values = nn.Parameter(values)
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None

    def _rows(self) -> torch.Tensor:
        """(nnz,) the output row of each stored element, from crow_indices (made per call: only the torch path
        needs it, and a stored copy could go stale when crow_indices is loaded or edited)."""
        crow = self.crow_indices
        return torch.repeat_interleave(torch.arange(len(crow) - 1, device=crow.device), crow[1:] - crow[:-1],
                                       output_size=self.col_indices.numel())     # (known: no device sync)

    @property
    def nnz(self) -> int:
        return int(self.col_indices.numel())

    def _spmm(self, X: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """X (B, n_cols, d) -> (B, rows, d): the generated CPU kernel (runtime.kernels.cpu) when it applies, else a
        gather and an index_add in torch."""
        if choice.cpu_kernel_applies("auto", self.algebra, X, self.values, self.bias, None):
            return choice.cpu().bsr_checked(self.algebra, self.crow_indices, cols, self.values, X, self.bias)
        prod = self.algebra.mul(self.values.to(X.dtype), X[:, cols])            # (B, nnz, d), weight left
        out = X.new_zeros(X.shape[0], self.crow_indices.numel() - 1, X.shape[-1])
        out = out.index_add(1, self._rows(), prod)
        if self.bias is not None:
            out = out + self.bias.to(X.dtype)
        return out


class BlockSparseAlgebraLinear(_BlockSparseBase):
    """Element-sparse AlgebraLinear for inference: (..., in*d) -> (..., out*d)."""

    def __init__(self, in_features, out_features, algebra, crow_indices, col_indices, values, bias=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self._init_csr(algebra, crow_indices, col_indices, values, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        d = self.algebra.dim
        lead = x.shape[:-1]
        if x.is_cuda:
            fast = _cuda_bsr()
            if fast is not None and fast.kernels_available(x):     # generated element-sparse kernel
                return fast.bsr_linear(self.algebra, self.crow_indices, self.col_indices, self.values, x, self.bias)
        X = x.reshape(-1, self.in_features, d)
        return self._spmm(X, self.col_indices).reshape(lead + (self.out_features * d,))

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, algebra={self.algebra.name}, nnz={self.nnz}, "
                f"density={self.nnz / max(1, self.in_features * self.out_features):.3f}")


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class BlockSparseAlgebraConv(_BlockSparseBase):
    """Element-sparse AlgebraConv{1,2,3}d for inference (im2col over whole elements + block-CSR)."""

    def __init__(self, in_channels, out_channels, kernel_size, algebra, crow_indices, col_indices, values,
                 bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        nd = len(self.kernel_size)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.stride, self.dilation = _tuple(stride, nd), _tuple(dilation, nd)
        self.padding = conv_padding(padding, nd, self.stride, type(self).__name__)
        self.padding_mode = check_padding_mode(padding_mode, type(self).__name__)
        self._init_csr(algebra, crow_indices, col_indices, values, bias)

    def _columns(self) -> torch.Tensor:
        """(nnz,) int32 im2col column of each stored element: col_indices, offset by its group's columns when
        groups > 1 (made per call from the stored indices, never a copy that could go stale)."""
        if self.groups == 1:
            return self.col_indices
        K = math.prod(self.kernel_size)
        cg, og = self.in_channels // self.groups, self.out_channels // self.groups
        group_of_row = torch.div(self._rows(), og, rounding_mode="floor")
        return (self.col_indices + group_of_row * (cg * K)).to(torch.int32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_real_floating(x, type(self).__name__)
        d = self.algebra.dim
        N = x.shape[0]
        pads = symmetric_pads(self.padding, self.kernel_size, self.dilation)
        flat = [p for pair in reversed(pads) for p in pair]
        if any(flat):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, flat, mode=mode)
        X, out_sp = element_columns(x, d, self.kernel_size, self.stride, self.dilation)
        return from_rows(self._spmm(X, self._columns()), N, out_sp)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"algebra={self.algebra.name}, nnz={self.nnz}")


#: Element density above which the block-sparse form of a Linear layer would be slower than the dense layer on
#: the CPU kernels (sparse / dense time ~ density x a per-algebra factor: each stored element costs a column-index
#: read and a gather that the dense stream does not pay): the lowest crossover measured at N = 2048, batch 1 and
#: 32, one thread, AVX-512 and AVX2 (docs/benchmarks.md), less a margin.  Other algebras: DEFAULT_MAX_DENSITY by
#: dimension (d >= 4: 0.3, the most cautious of the measured ones).
SPARSE_MAX_DENSITY = {"R": 0.10, "C": 0.36, "Dual": 0.36, "Cross3": 0.42, "H": 0.45, "M2R": 0.45, "M3R": 0.42,
                      "M4R": 0.3, "M2C": 0.42}
DEFAULT_MAX_DENSITY = {1: 0.10, 2: 0.36, 3: 0.42}


def sparse_max_density(algebra) -> float:
    """The element density (stored / all elements) up to which `to_block_sparse` makes a Linear layer over
    `algebra` (a name or runtime.registry.Algebra) block-sparse; above it the dense layer is faster."""
    A = load_algebra(algebra)
    return SPARSE_MAX_DENSITY.get(A.name, DEFAULT_MAX_DENSITY.get(A.dim, 0.3))


def element_sparsity(layer: nn.Module) -> float:
    """The fraction of the layer's weight elements that are pruned or exactly zero (0 for an empty weight)."""
    w = layer.weight.detach()
    if not w.numel():
        return 0.0
    return float((w == 0).all(-1).float().mean())


@torch.no_grad()
def to_block_sparse(layer: nn.Module, min_sparsity: float | None = None) -> nn.Module:
    """The element-sparse inference form of a (pruned) algebra Linear or Conv layer; same outputs.
    Transposed convolutions have none (refused).

    A layer whose element sparsity is below `min_sparsity` stays dense (faster there): the result is then a copy
    of the layer with its mask made permanent (no per-call masking).  The default, None, is the measured
    crossover for Linear layers, 1 - sparse_max_density(algebra), and 0 (always the sparse form) for
    convolutions; min_sparsity=0 always gives the sparse form."""
    require_algebra_layer(layer, "to_block_sparse")
    if is_learned(layer.algebra):
        raise ValueError(f"to_block_sparse: the layer's algebra {layer.algebra.name} is learned; the sparse kernels "
                         f"need a fixed algebra (build its structure as one: LearnedAlgebra.spec_source)")
    if getattr(layer, "transposed", False):
        raise ValueError(f"to_block_sparse: {type(layer).__name__} is a transposed convolution, which has no "
                         f"block-sparse form; keep it dense (its element mask still applies)")
    w = layer.weight.detach()
    if min_sparsity is None:
        min_sparsity = 1.0 - sparse_max_density(layer.algebra) if w.dim() == 3 else 0.0
    if min_sparsity > 0 and element_sparsity(layer) < min_sparsity:
        return _masked_copy(layer)
    crow, col, values = block_csr(w, get_mask(layer))
    bias = getattr(layer, "bias", None)
    if w.dim() == 3:
        return BlockSparseAlgebraLinear(w.shape[1], w.shape[0], layer.algebra, crow, col, values, bias)
    groups = int(getattr(layer, "groups", 1))
    return BlockSparseAlgebraConv(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:-1]), layer.algebra, crow, col,
                                  values, bias, getattr(layer, "stride", 1), getattr(layer, "padding", 0),
                                  getattr(layer, "dilation", 1), groups, getattr(layer, "padding_mode", "zeros"))


def convert_to_block_sparse(model: nn.Module, min_sparsity: float | None = None) -> nn.Module:
    """Replace (in place) every algebra layer whose element sparsity is >= min_sparsity by its sparse form
    (default None: where `to_block_sparse` picks it, i.e. above the measured crossover for Linear layers;
    transposed convolutions, which have none, stay dense)."""
    targets = [(n, m) for n, m in prunable_layers(model)
               if n and not getattr(m, "transposed", False) and m.weight.numel()]
    targets = [(n, m) for n, m in targets if min_sparsity is None or element_sparsity(m) >= min_sparsity]
    for name, m in targets:
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2], to_block_sparse(m, None if min_sparsity is None else 0.0))
    return model
