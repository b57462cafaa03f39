"""One process or many: torchrun's environment, the process group, and the reductions the loop needs.

    ctx = setup("auto")        # reads RANK / WORLD_SIZE / LOCAL_RANK set by torchrun; nccl on GPU, gloo on CPU
    ...
    teardown(ctx)              # every rank waits for the others, then the group is destroyed

Without torchrun (no WORLD_SIZE in the environment) nothing is initialised and every helper is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Context", "setup", "teardown", "barrier", "all_reduce_sum", "broadcast_object"]


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if choice != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {choice!r}")
    return torch.device("cpu")


def setup(device: str = "auto") -> Context:
    """The process's rank, world size and device; joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Context(rank, world, local_rank, dev)


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def teardown(ctx: Context, clean: bool = True) -> None:
    """Leave the process group.  Every rank must be done with the group before any tears it down (a rank
    leaving early makes gloo abort the others), so a clean exit waits at a barrier; after an error the
    other ranks may never arrive, so it does not."""
    if ctx.distributed and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(ctx: Context, t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over all ranks (in place; `t` itself on one process)."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(ctx: Context, obj):
    """Rank 0's `obj` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
