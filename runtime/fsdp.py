"""Sharded data-parallel training (FSDP2, `torch.distributed.fsdp.fully_shard`) of algebra models.

    dist.init_process_group(...)              # torchrun: nccl on GPU, gloo on CPU
    shard_model(model)                        # each block its own FSDP unit, then the root
    opt = torch.optim.AdamW(model.parameters())   # parameters are DTensors sharded along dim 0

Algebra weights (out, in, *kernel, d) shard along their first dimension like any tensor; FSDP gathers the
full weight before each unit's forward and backward, so every method (block, fold, bilinear, kernel at
inference) sees ordinary tensors.  Units: the blocks of the project's models (Transformer and ViT blocks,
ResNet blocks, the Transformer encoder / decoder layers), or the module types given as ``units``.
"""
from __future__ import annotations

from typing import Iterable

from torch import nn

__all__ = ["shard_model", "default_units"]


def default_units() -> tuple[type, ...]:
    """The block types that become their own FSDP unit by default."""
    from .layers.transformer import AlgebraTransformerDecoderLayer, AlgebraTransformerEncoderLayer
    from .models.resnet import BasicBlock, Bottleneck
    from .models.transformer import TransformerBlock
    from .models.vit import ViTEncoderBlock

    return (TransformerBlock, ViTEncoderBlock, BasicBlock, Bottleneck, AlgebraTransformerEncoderLayer,
            AlgebraTransformerDecoderLayer)


def shard_model(model: nn.Module, mesh=None, units: Iterable[type] | None = None,
                reshard_after_forward: bool = True) -> nn.Module:
    """Apply `fully_shard` to every submodule of a `units` type (default `default_units()`), then to `model`.

    mesh: a 1-D DeviceMesh (default: all ranks of the default process group on the parameters' device type).
    Needs an initialised process group.  Returns `model`, whose parameters are now sharded DTensors.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("shard_model: initialise the process group first (torch.distributed.init_process_group, "
                           "or run under torchrun)")
    if mesh is None:
        p = next(model.parameters(), None)
        device_type = p.device.type if p is not None else "cpu"
        mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    kinds = tuple(units) if units is not None else default_units()
    for m in list(model.modules()):
        if m is not model and isinstance(m, kinds):
            fully_shard(m, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return model
