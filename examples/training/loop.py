"""The training loop both experiment scripts run.

    metrics = train(task, config, ctx)

Per step: the learning rate from the schedule (linear warmup, then cosine to zero), torch's RNG reseeded
from (seed, rank, step) (so dropout after a resume matches an uninterrupted run), forward and loss under
bf16 autocast when asked, backward (gradients averaged over processes by DistributedDataParallel),
optional gradient clipping, the optimizer step, and the element pruner on its cubic schedule.  Every
`log_every` steps rank 0 writes the mean loss over all processes and the throughput to the CSV log;
every `eval_every` steps (and at the end) the task's evaluation sets are scored on every rank's shard
and summed; every `ckpt_every` steps (and at the end or at `stop_at`) rank 0 writes the checkpoint.
On CPU with the same number of processes and threads, a resumed run repeats the uninterrupted run's
losses bit for bit.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from runtime import sparsity

from . import checkpoint
from .distributed import (Context, all_reduce_max, all_reduce_sum, barrier, full_state_dicts, load_optimizer_state,
                          shard)
from .cli import claim_run_folder, clear_run_folder
from .log import CsvLog, progress_bar
from .sampling import ResumableSampler, SeededDataset, ShardSampler, sample_seed

__all__ = ["Task", "TrainConfig", "train", "evaluate", "eval_loader", "lr_at", "param_groups"]


class Task:
    """What a script supplies.  Subclasses set the attributes and implement the methods.

    model: the (unwrapped) model; train_set: a map-style dataset whose samples the default collate
    stacks; eval_sets: evaluated every `eval_every` steps and at the end; final_sets: at the end only.
    sums: the names `eval_sums` returns (summed over batches and processes); metrics: what `finish`
    makes of them.  unit: what `loss` counts ("images", "tokens") for the throughput.  identity: the
    options that shape the model and data (a resumed run must match them).
    """

    name: str = "task"
    unit: str = "items"
    model: nn.Module
    train_set: Dataset
    eval_sets: dict[str, Dataset] = {}
    final_sets: dict[str, Dataset] = {}
    sums: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    identity: dict = {}

    def prepare(self, batch: Any, device: torch.device) -> Any:
        """Move a collated batch to `device` (and convert it as the model wants)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Training loss of a prepared batch through `model` (the DDP wrapper) and its item count."""
        raise NotImplementedError

    def eval_sums(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Per-batch sums (0-d tensors) for every name in `sums`."""
        raise NotImplementedError

    def finish(self, sums: dict[str, float]) -> dict[str, float]:
        """Metrics from sums over a whole evaluation set."""
        raise NotImplementedError

    def after_eval(self, model: nn.Module, step: int, out: Path) -> str | None:
        """Rank 0, after each evaluation: an optional line to print (e.g. a generated sample)."""
        return None


@dataclass
class TrainConfig:
    out: Path
    batch_size: int                         # per process
    epochs: int | None = None               # one of epochs / steps gives the schedule's length
    steps: int | None = None
    stop_at: int | None = None              # stop (with a checkpoint) at this step; the schedule is unchanged
    optimizer: str = "sgd"                  # "sgd" (Nesterov momentum) or "adamw"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 5e-5
    warmup_steps: int | None = None
    warmup_epochs: float | None = None
    clip: float | None = None
    amp: str = "none"                       # "bf16" or "none"
    channels_last: bool = False
    compile: bool = False
    prune: float = 0.0                      # final element sparsity
    prune_start: float = 0.1                # fractions of the schedule
    prune_end: float = 0.75
    prune_every: int = 100
    log_every: int = 50
    eval_every: int | None = None           # default: once per epoch
    ckpt_every: int | None = None           # default: once per epoch
    eval_batch_size: int | None = None
    resume: str | None = None               # "auto" (out/checkpoint.pt if it exists) or a path
    overwrite: bool = False                 # replace a run already in `out` (else refused unless resuming)
    seed: int = 0
    workers: int = 4
    progress: bool = True
    fsdp: bool = False                      # shard with FSDP2 (runtime.fsdp) instead of DistributedDataParallel
    extra: dict = field(default_factory=dict)   # recorded in config.json only


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warmup from base/warmup to base over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) or "Norm" in type(m).__name__


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights and embeddings; none on biases and normalisation parameters."""
    decay, no_decay = [], []
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if _is_norm(m) or "bias" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")


@torch.no_grad()
def _channels_last_(model: nn.Module) -> None:
    """Real 4-d conv weights to channels-last.  (`model.to(memory_format=...)` refuses the algebra convs'
    5-d (out, in, kh, kw, d) weights; those layers take channels-last activations as they are.)"""
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)


def _autocast(amp: str, device: torch.device):
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if amp != "none":
        raise ValueError(f"amp must be 'bf16' or 'none', got {amp!r}")
    return nullcontext()


def _loader(dataset: Dataset, sampler, batch_size: int, cfg: TrainConfig, ctx: Context, drop_last: bool):
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      num_workers=cfg.workers, pin_memory=ctx.device.type == "cuda",
                      persistent_workers=cfg.workers > 0)


def eval_loader(dataset: Dataset, cfg: TrainConfig, ctx: Context) -> DataLoader:
    """This rank's shard of an evaluation set, in order, nothing dropped or repeated."""
    return _loader(dataset, ShardSampler(len(dataset), ctx.rank, ctx.world), cfg.eval_batch_size or cfg.batch_size,
                   cfg, ctx, drop_last=False)


def evaluate(task: Task, model: nn.Module, loader: DataLoader, ctx: Context, amp: str,
             fsdp: bool = False) -> dict[str, float]:
    """Task metrics over a whole dataset: each rank scores its shard (`eval_loader`), the sums are added
    over ranks.  Under FSDP every forward is collective, so a rank whose shard has fewer batches runs its
    last batch again (results discarded) until all ranks have run as many."""
    totals = torch.zeros(len(task.sums), dtype=torch.float64, device=ctx.device)
    was_training = model.training
    model.eval()
    rounds = all_reduce_max(ctx, len(loader)) if fsdp else len(loader)
    with torch.no_grad(), _autocast(amp, ctx.device):
        batch = None
        for batch in loader:
            batch = task.prepare(batch, ctx.device)
            sums = task.eval_sums(model, batch)
            totals += torch.stack([sums[k].double() for k in task.sums])
        for _ in range(rounds - len(loader)):
            if batch is None:
                raise ValueError("--fsdp: an evaluation set has fewer samples than processes")
            task.eval_sums(model, batch)
    model.train(was_training)
    all_reduce_sum(ctx, totals)
    return task.finish(dict(zip(task.sums, totals.tolist())))


def _columns(task: Task) -> list[str]:
    sets = list(task.eval_sets) + list(task.final_sets)
    return (["step", "epoch", "lr", "loss", f"{task.unit}_per_s", "sparsity", "seconds"]
            + [f"{s}_{m}" for s in sets for m in task.metrics])


def _schedule(cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, int, int, int, int]:
    """Steps: total (the schedule's length), warm-up, between evaluations, between checkpoints, and where
    this invocation stops."""
    if (cfg.epochs is None) == (cfg.steps is None):
        raise ValueError("give exactly one of epochs and steps")
    total = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    if total < 1:
        raise ValueError(f"the run has no training step (epochs={cfg.epochs}, steps={cfg.steps}): give at least 1")
    warmup = (cfg.warmup_steps if cfg.warmup_steps is not None
              else round((cfg.warmup_epochs or 0) * steps_per_epoch))
    stop = min(total, cfg.stop_at) if cfg.stop_at is not None else total
    return total, warmup, cfg.eval_every or steps_per_epoch, cfg.ckpt_every or steps_per_epoch, stop


def _resume_state(cfg: TrainConfig, ctx: Context) -> tuple[dict | None, Path]:
    path = cfg.out / "checkpoint.pt"
    if cfg.resume is None:
        return None, path
    if cfg.resume != "auto":
        return checkpoint.load(Path(cfg.resume)), Path(cfg.resume)
    if path.is_file():
        return checkpoint.load(path), path
    if ctx.is_main:
        print(f"--resume: no checkpoint at {path} yet, starting from step 0", flush=True)
    return None, path


def train(task: Task, cfg: TrainConfig, ctx: Context) -> dict[str, float]:
    """Train `task.model` as `cfg` says; returns the final metrics ({set}_{metric}) on rank 0 and others."""
    cfg.out = Path(cfg.out)
    model = task.model.to(ctx.device)
    if cfg.prune > 0:
        sparsity.prune_elements_(model, 0.0)        # masks exist before DDP and the optimizer see the model
    state, ckpt_from = _resume_state(cfg, ctx)
    if state is not None:
        checkpoint.check_identity(state["identity"], task.identity, ckpt_from)
        sparsity.load_pruned_state_dict(model, state["model"])
    if cfg.channels_last:
        _channels_last_(model)
    if cfg.fsdp:
        if cfg.prune > 0:
            raise ValueError("--fsdp with --prune is not supported (the pruning masks are not sharded)")
        if cfg.compile:
            raise ValueError("--fsdp with --compile is not supported by this loop")
        shard(ctx, model)                           # before the optimizer: it then holds the sharded parameters
    opt = _optimizer(model, cfg)
    pruner = None

    sampler = ResumableSampler(task.train_set, ctx.rank, ctx.world, cfg.seed)
    steps_per_epoch = sampler.samples_per_epoch // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the training set ({len(task.train_set)} samples) holds less than one batch of "
                         f"{cfg.batch_size} per process x {ctx.world} processes")
    total, warmup, eval_every, ckpt_every, stop = _schedule(cfg, steps_per_epoch)
    if cfg.prune > 0:
        pruner = sparsity.GradualPruner(model, cfg.prune, start_step=int(cfg.prune_start * total),
                                        end_step=int(cfg.prune_end * total), frequency=cfg.prune_every)
    step = 0
    if state is not None:
        if bool(state.get("fsdp", False)) != (cfg.fsdp and ctx.distributed):
            raise ValueError(f"{ckpt_from} was written {'with' if state.get('fsdp') else 'without'} FSDP "
                             f"sharding; resume it the same way (its optimizer state is laid out for that)")
        load_optimizer_state(ctx, model, opt, state["optimizer"], cfg.fsdp)
        if pruner is not None and state.get("pruner") is not None:
            pruner.load_state_dict(state["pruner"])
        step = int(state["step"])
        if step >= total:
            raise ValueError(f"{ckpt_from} is at step {step}, the end of this {total}-step run: nothing to "
                             f"resume (results in {cfg.out / 'summary.json'})")
    del state

    net: nn.Module = model
    if ctx.distributed and not cfg.fsdp:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda"
                                                  else None)
    if cfg.compile:
        net = torch.compile(net)

    log = None
    if ctx.is_main:
        claim_run_folder(cfg.out, cfg.resume, cfg.overwrite)
        if cfg.overwrite and cfg.resume is None:
            clear_run_folder(cfg.out)
        cfg.out.mkdir(parents=True, exist_ok=True)
        (cfg.out / "config.json").write_text(json.dumps(
            {**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
             "identity": task.identity, "world_size": ctx.world, "total_steps": total,
             "steps_per_epoch": steps_per_epoch}, indent=1, default=str))
        log = CsvLog(cfg.out / "log.csv", _columns(task), resume_step=step if step else None)
    bar = progress_bar(total, step, cfg.progress and ctx.is_main, task.name)

    def save() -> None:
        model_state, opt_state = full_state_dicts(ctx, model, opt, cfg.fsdp)     # collective under FSDP
        if ctx.is_main:
            checkpoint.save(cfg.out / "checkpoint.pt", {
                "step": step, "model": model_state, "optimizer": opt_state,
                "pruner": None if pruner is None else pruner.state_dict(), "identity": task.identity,
                "world_size": ctx.world, "fsdp": cfg.fsdp and ctx.distributed, "torch": str(torch.__version__)})
        barrier(ctx)

    eval_loaders = {name: eval_loader(ds, cfg, ctx) for name, ds in {**task.eval_sets, **task.final_sets}.items()}

    def run_eval(sets: dict[str, Dataset]) -> dict[str, float]:
        row = {}
        for set_name in sets:
            for k, v in evaluate(task, model, eval_loaders[set_name], ctx, cfg.amp, cfg.fsdp).items():
                row[f"{set_name}_{k}"] = v
        if ctx.is_main:
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()))
            # under FSDP a forward on rank 0 alone would wait for the others forever: no samples
            line = None if (cfg.fsdp and ctx.distributed) else task.after_eval(model, step, cfg.out)
            if line:
                bar.write(line)
        return row

    start_time = time.perf_counter()
    window_t, window_items, window_steps = time.perf_counter(), 0, 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
    # one loader for the whole run (its workers persist); the sampler is moved to each epoch before iterating
    train_loader = _loader(SeededDataset(task.train_set, cfg.seed), sampler, cfg.batch_size, cfg, ctx, drop_last=True)
    model.train()
    row: dict[str, Any] = {}
    while step < stop:
        epoch, within = divmod(step, steps_per_epoch)
        sampler.start(epoch, within * cfg.batch_size)
        for batch in train_loader:
            lr = lr_at(step, total, warmup, cfg.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            torch.manual_seed(sample_seed(cfg.seed, ctx.rank, step, 1))
            batch = task.prepare(batch, ctx.device)
            with _autocast(cfg.amp, ctx.device):
                loss, items = task.loss(net, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            if pruner is not None:
                pruner.step(step)
            step += 1
            loss_sum += loss.detach().double()
            window_items += items * ctx.world
            window_steps += 1
            bar.update(1)

            row: dict[str, Any] = {}
            if step % cfg.log_every == 0 or step == stop:
                all_reduce_sum(ctx, loss_sum)
                now = time.perf_counter()
                mean_loss = loss_sum.item() / (window_steps * ctx.world)
                rate = window_items / max(now - window_t, 1e-9)
                row.update(step=step, epoch=step / steps_per_epoch, lr=lr, loss=mean_loss,
                           sparsity=0.0 if pruner is None else pruner.current_sparsity,
                           seconds=now - start_time, **{f"{task.unit}_per_s": rate})
                bar.set_postfix_str(f"loss {mean_loss:.4f} lr {lr:.3g} {rate:,.0f} {task.unit}/s")
                loss_sum.zero_()
                window_t, window_items, window_steps = now, 0, 0
            if step % eval_every == 0 and step < total:
                row.update(step=step, epoch=step / steps_per_epoch, **run_eval(task.eval_sets))
            if log is not None and row and step < total:     # the last row also gets the final metrics
                log.write(row)
            if step % ckpt_every == 0 or step == stop:
                save()
            if step >= stop:
                break

    final: dict[str, float] = {}
    if step >= total:
        final = run_eval({**task.eval_sets, **task.final_sets})
        if log is not None:
            log.write({**row, **final})
            (cfg.out / "summary.json").write_text(json.dumps(
                {"step": step, **final, **task.identity, "world_size": ctx.world}, indent=1, default=str))
    if log is not None:
        log.close()
    bar.close()
    return final
