"""Packed inference layers: the weight repacked once, component-major, for the CPU kernels' planar variant.

    from runtime import packing
    fast = packing.to_packed(model.fc)          # one AlgebraLinear -> PackedAlgebraLinear (same outputs)
    packing.convert_to_packed(model)            # every AlgebraLinear of a model, in place
    with torch.inference_mode(): y = fast(x)    # batch 1: the planar kernel at the real GEMV's bandwidth

At batch 1 a product layer is a GEMV whose speed is the rate it streams its weight.  The compact weight
(out, in, d) keeps an element's d components together, so a kernel over it needs d-periodic lane bookkeeping
(pattern copies, lcm(d, lanes)-float chunks): fine for d = 2, 4, 8, costly for d = 9 (M3R) or for d = 16 on
16 vector registers (M4R on AVX2).  The planar layout (`runtime.kernels.cpu.pack`) holds blocks of as many
elements as the target's vector lanes, component by component, so every multiply-add of the product runs on
whole vectors of elements whatever d is.  Made once when packing, never per call.

The packed layer holds only the packed weight (the same memory as the compact one, zero-padded to whole
blocks), so there is no second copy to go stale: it has no `weight` parameter to edit; `unpacked_weight()`
returns a copy, `state_dict()` saves the compact weight under "weight" (loadable into an AlgebraLinear and
back: loading repacks), `.to()` / `.double()` / pickling unpack and repack.  It is an inference form with no
trainable weight: gradients flow to the input (through the torch paths), not to the weight.  Calls the planar
kernel cannot serve (a gradient needed, another device or dtype, autocast, more than PLANAR_MAX_ROWS rows, no
compiler) run the layer's torch path on the unpacked weight (one extra pass over the weight per call).
"""
from __future__ import annotations

import torch
from torch import nn

from . import functional as AF
from .checks import autocast_dtype, has_tangent, needs_grad, require_real_floating
from .kernels import choice
from .layers.linear import AlgebraLinear
from .learned_algebra import is_learned

__all__ = ["PackedAlgebraLinear", "to_packed", "convert_to_packed", "PLANAR_MAX_ROWS"]

#: the most rows (batch entries) a call runs through the packed kernel (elements in the vector lanes up to 4 rows,
#: batch rows in the lanes above); above, the layer's own path on the unpacked weight, where a GEMM reuses each
#: weight enough to pay for the extra pass (the CPU kernels' batch range, runtime.kernels.choice)
PLANAR_MAX_ROWS = 16


def _planar_applies(x2: torch.Tensor, store: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether this call on a packed weight runs the packed kernels: CPU float32 / float64 of the packed weight's
    dtype, few rows, no gradient or tangent, no autocast, not exporting to ONNX (the cheap tests first: this is
    the batch-1 hot path)."""
    return (x2.dtype == store.dtype and x2.is_cpu and x2.shape[0] <= PLANAR_MAX_ROWS and not needs_grad(x2, bias)
            and not has_tangent(x2, bias) and autocast_dtype("cpu") is None and not choice.exporting()
            and (bias is None or bias.dtype == store.dtype))


class PackedAlgebraLinear(nn.Module):
    """An AlgebraLinear's inference form with its weight packed for the planar CPU kernel; same outputs.

    Built by `to_packed(layer)`.  Shapes as AlgebraLinear: (..., in_features * d) -> (..., out_features * d).
    Buffers: `packed` (the packed weight; the compact weight on devices or dtypes the kernels do not pack) and
    `bias` (out_features, d) or None.
    """

    def __init__(self, layer: AlgebraLinear):
        super().__init__()
        if is_learned(layer.algebra):
            raise ValueError(f"to_packed: the layer's algebra {layer.algebra.name} is learned; its structure is an "
                             f"input of the product, which the packed kernels do not take (build it as a fixed "
                             f"algebra: LearnedAlgebra.spec_source)")
        self.algebra = layer.algebra
        self.method = layer.method
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self._who = f"PackedAlgebraLinear(in_features={self.in_features}, out_features={self.out_features}, " \
                    f"algebra={self.algebra.name})"
        bias = layer.bias.detach().clone() if layer.bias is not None else None
        self.register_buffer("bias", bias)
        self.register_buffer("packed", None, persistent=False)
        self._store(layer.weight.detach())

    # -- the one stored form of the weight
    def _store(self, compact: torch.Tensor) -> None:
        """Keep `compact` (out, in, d) packed where the kernels pack it (CPU float32 / float64), else as is."""
        self.is_packed = (compact.device.type == "cpu" and compact.dtype in choice.cpu().DTYPES
                          and choice.cpu().ready(self.algebra))
        if self.is_packed:
            self.packed = choice.cpu().pack(self.algebra, compact.contiguous())
        else:
            self.packed = compact.detach().clone()

    def unpacked_weight(self) -> torch.Tensor:
        """A copy of the weight in the compact layout (out_features, in_features, d)."""
        if not self.is_packed:
            return self.packed.clone()
        return choice.cpu().unpack(self.algebra, self.packed, self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed, bias = self._buffers["packed"], self._buffers["bias"]
        d = self.algebra.dim
        width = self.in_features * d
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[-1] != width:
            require_real_floating(x, self._who)
            raise ValueError(f"{self._who}: expected {width} input features ({self.in_features} elements x d={d}) "
                             f"in the last dimension, got {tuple(x.shape)}")
        flat = x.dim() == 2
        x2 = x if flat else x.reshape(-1, width)
        if self.is_packed and _planar_applies(x2, packed, bias):
            y = choice.cpu().planar_checked(self.algebra, packed, x2.contiguous(), bias, self.out_features,
                                            self.in_features)
        else:
            require_real_floating(x, self._who)
            y = AF.linear_impl(x2, self.unpacked_weight(), bias, self.algebra, self.method, self._who)
        return y if flat else y.reshape(*x.shape[:-1], self.out_features * d)

    # -- state: the compact weight, so state dicts and pickles move between packed and plain layers and targets
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self.unpacked_weight()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "weight"
        weight = state_dict.get(key)
        if weight is None:
            missing_keys.append(key)
        elif tuple(weight.shape) != (self.out_features, self.in_features, self.algebra.dim):
            error_msgs.append(f"size mismatch for {key}: copying a param with shape {tuple(weight.shape)}, the "
                              f"shape in current model is {(self.out_features, self.in_features, self.algebra.dim)}")
        else:
            current = self.unpacked_weight()
            self._store(weight.detach().to(device=current.device, dtype=current.dtype))
        rest = {k: v for k, v in state_dict.items() if k != key}
        super()._load_from_state_dict(rest, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def _apply(self, fn, recurse=True):
        compact = fn(self.unpacked_weight())
        self.packed = None
        super()._apply(fn, recurse)
        self._store(compact)
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_buffers"] = dict(state["_buffers"], packed=self.unpacked_weight())
        state["is_packed"] = False
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._store(self._buffers["packed"])

    def extra_repr(self) -> str:
        form = "packed (planar CPU kernel)" if self.is_packed else "compact"
        return (f"in_features={self.in_features}, out_features={self.out_features}, algebra={self.algebra.name}, "
                f"bias={self.bias is not None}, weight={form}")


def to_packed(layer: nn.Module) -> nn.Module:
    """The packed inference form of an AlgebraLinear (a pruned one included: its mask is applied); any other
    module is returned as it is.  Same outputs up to rounding."""
    if isinstance(layer, AlgebraLinear) and not is_learned(layer.algebra):
        return PackedAlgebraLinear(layer)
    return layer


def convert_to_packed(model: nn.Module) -> nn.Module:
    """Replace (in place) every AlgebraLinear with a fixed algebra in `model` by its packed form; returns the
    model (the packed layer itself when `model` is one AlgebraLinear)."""
    if isinstance(model, AlgebraLinear):
        return to_packed(model)
    targets = [(n, m) for n, m in model.named_modules() if n and isinstance(m, AlgebraLinear)
               and not is_learned(m.algebra)]
    for name, m in targets:
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2], to_packed(m))
    return model
