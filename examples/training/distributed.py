"""One process or many: torchrun's environment, the process group, and the reductions the loop needs.

    ctx = setup("auto")        # reads RANK / WORLD_SIZE / LOCAL_RANK set by torchrun; nccl on GPU, gloo on CPU
    ...
    teardown(ctx)              # every rank waits for the others, then the group is destroyed

Without torchrun (no WORLD_SIZE in the environment) nothing is initialised and every helper is a no-op.
With --fsdp, `shard` replaces DistributedDataParallel by FSDP2 (`runtime.fsdp`), and checkpoints go through
`full_state_dicts` / `load_optimizer_state` (full tensors, so they load unsharded too).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Context", "setup", "teardown", "barrier", "all_reduce_sum", "all_reduce_max", "broadcast_object",
           "shard", "full_state_dicts", "load_optimizer_state"]


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
        _finished[0] = clean


_finished = [False]          # a distributed run of this process ended well and left its group


def leave_after_a_finished_run() -> None:
    """After a distributed run that ended well (its script returned), flush and exit with code 0 at once,
    skipping C++ static teardown, where torch's gloo threads now and then abort the process ("terminate called
    without an active exception") after everything was written, which torchrun reports as a failed rank.
    Does nothing otherwise."""
    if not _finished[0]:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def all_reduce_sum(ctx: Context, t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over all ranks (in place; `t` itself on one process)."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(ctx: Context, n: int) -> int:
    """The largest `n` over all ranks."""
    if not ctx.distributed:
        return n
    t = torch.tensor([n], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def broadcast_object(ctx: Context, obj):
    """Rank 0's `obj` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(ctx: Context, model: torch.nn.Module) -> torch.nn.Module:
    """--fsdp: shard `model` over all ranks with FSDP2 (`runtime.fsdp.shard_model`: each block its own unit,
    then the root).  Call before the optimizer is made; a no-op on one process."""
    if not ctx.distributed:
        return model
    from runtime.fsdp import shard_model

    return shard_model(model)


def full_state_dicts(ctx: Context, model: torch.nn.Module, opt: torch.optim.Optimizer,
                     fsdp: bool) -> tuple[dict, dict]:
    """(model, optimizer) state dicts as full tensors for a checkpoint.  Under FSDP every rank must call it
    (it gathers the shards); rank 0 gets the tensors (on CPU), the others empty dicts."""
    if not (fsdp and ctx.distributed):
        return model.state_dict(), opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(ctx: Context, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict,
                         fsdp: bool) -> None:
    """Load an optimizer state dict written by `full_state_dicts` (every rank holds the checkpoint)."""
    if not (fsdp and ctx.distributed):
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))
