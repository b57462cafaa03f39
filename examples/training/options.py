"""Command-line options both experiment scripts take, the algebra they name, and the run's config.

    parser = argparse.ArgumentParser(...)
    add_arguments(parser, optimizer="sgd", lr=0.1, ...)     # script-specific defaults
    args = parser.parse_args()
    algebra = resolve_algebra(args, ctx)                    # built-in, or a user spec built on demand
    config = train_config(args, lr=...)
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch

from runtime.registry import Algebra, AlgebraNotBuiltError, load_algebra

from .cli import (UserError, claim_run_folder, fraction, nonnegative_float, nonnegative_int, positive_float,
                  positive_int, probability)
from .distributed import Context, barrier, setup, teardown
from .loop import TrainConfig

__all__ = ["add_arguments", "launch", "resolve_algebra", "train_config", "MATCH_CHOICES"]

MATCH_CHOICES = ("params", "macs", "width", "none")


def add_arguments(parser: argparse.ArgumentParser, *, optimizer: str, lr: float | None, weight_decay: float,
                  batch_size: int, label_smoothing: float, log_every: int, workers: int,
                  length: tuple[str, int]) -> None:
    """The common options; `length` = ("epochs" | "steps", n) is the run's length when neither is given."""
    parser.set_defaults(default_length=length)
    g = parser.add_argument_group("algebra")
    g.add_argument("--algebra", default="R", help="algebra name: R, C, H, M2R, ... or one of your own")
    g.add_argument("--spec-dir", type=Path, default=None,
                   help="folder of your own algebra specs; the algebra is built into --generated if needed")
    g.add_argument("--generated", type=Path, default=None,
                   help="generated folder to load algebras from (default: $ALGEBRANETS_GENERATED or the "
                        "project's generated/; with --spec-dir: OUT/generated)")
    g.add_argument("--match", choices=MATCH_CHOICES, default="params",
                   help="width matching against the real model: equal parameters (N = C/sqrt(d)), equal "
                        "multiply-adds (C/sqrt(c)), equal real width (C/d) or one element per channel")
    g.add_argument("--match-scope", choices=("layers", "model"), default="layers",
                   help="match every algebra layer to the real layer it replaces, or the whole model's total "
                        "(embeddings, stem and read-out included) by searching one width")
    g.add_argument("--macs-method", default="bilinear", choices=("naive", "block", "fold", "bilinear"),
                   help="the product whose multiply-adds --match macs equalises")
    g.add_argument("--method", default=None, help="layer method (auto, block, fold, bilinear; default auto)")

    g = parser.add_argument_group("training")
    g.add_argument("--out", type=Path, required=True, help="run folder: log.csv, checkpoint.pt, summary.json")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, such a folder is refused unless --resume)")
    g.add_argument("--batch-size", type=positive_int, default=batch_size, help="per process")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, default=None)
    length.add_argument("--steps", type=positive_int, default=None)
    g.add_argument("--stop-at", type=positive_int, default=None,
                   help="stop with a checkpoint at this step (the schedule still spans --epochs/--steps)")
    g.add_argument("--optimizer", choices=("sgd", "adamw"), default=optimizer)
    g.add_argument("--lr", type=positive_float, default=lr,
                   help="peak learning rate" + (" (default: 0.1 x global batch / 256)" if lr is None else ""))
    g.add_argument("--momentum", type=probability, default=0.9, help="SGD (Nesterov) momentum")
    g.add_argument("--weight-decay", type=nonnegative_float, default=weight_decay)
    warm = g.add_mutually_exclusive_group()
    warm.add_argument("--warmup-steps", type=nonnegative_int, default=None)
    warm.add_argument("--warmup-epochs", type=nonnegative_float, default=None)
    g.add_argument("--clip", type=positive_float, default=None, help="clip the gradient norm to this")
    g.add_argument("--label-smoothing", type=probability, default=label_smoothing)
    g.add_argument("--amp", choices=("bf16", "none"), default=None,
                   help="bfloat16 autocast (default: bf16 on CUDA, none on CPU)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--fsdp", action="store_true",
                   help="under torchrun, shard parameters, gradients and optimizer state with FSDP2 "
                        "(runtime.fsdp: one unit per block) instead of DistributedDataParallel")
    g.add_argument("--prune", type=probability, default=0.0, metavar="SPARSITY",
                   help="final fraction of pruned weight elements (cubic schedule)")
    g.add_argument("--prune-start", type=fraction, default=0.1, help="fraction of training where pruning starts")
    g.add_argument("--prune-end", type=fraction, default=0.75, help="fraction of training where it reaches --prune")
    g.add_argument("--prune-every", type=positive_int, default=100, help="steps between mask updates")

    g = parser.add_argument_group("run")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue from OUT/checkpoint.pt (or the given file)")
    g.add_argument("--log-every", type=positive_int, default=log_every)
    g.add_argument("--eval-every", type=positive_int, default=None, help="steps (default: once per epoch)")
    g.add_argument("--ckpt-every", type=positive_int, default=None, help="steps (default: once per epoch)")
    g.add_argument("--eval-batch-size", type=positive_int, default=None)
    g.add_argument("--seed", type=nonnegative_int, default=0)
    g.add_argument("--workers", type=nonnegative_int, default=workers, help="DataLoader worker processes per process")
    g.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads per process")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    g.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms (exact reruns on GPU, slower)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def launch(args, run: Callable[[argparse.Namespace, Context], dict]) -> dict:
    """Apply the run-wide options (length, threads, determinism), join the process group when started
    by torchrun, `run(args, ctx)`, and leave the group."""
    if args.epochs is None and args.steps is None:
        setattr(args, *args.default_length)
    if args.prune_end < args.prune_start:
        raise UserError(f"--prune-end {args.prune_end} comes before --prune-start {args.prune_start}")
    claim_run_folder(args.out, args.resume, args.overwrite)      # before any work: refuse to overwrite a run
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    ctx = setup(args.device)
    clean = False
    try:
        result = run(args, ctx)
        clean = True
        return result
    finally:
        teardown(ctx, clean)


def resolve_algebra(args, ctx: Context) -> Algebra:
    """The algebra `--algebra` names.  With --spec-dir, rank 0 builds it (`python -m codegen build`) into
    the generated folder when it is missing or stale there; the others wait, then load it."""
    generated = args.generated
    if args.spec_dir is not None:
        generated = generated or (args.out / "generated")
        if ctx.is_main:
            try:
                load_algebra(args.algebra, generated)
            except AlgebraNotBuiltError:
                cmd = [sys.executable, "-m", "codegen", "build", "--spec-dir", str(args.spec_dir),
                       "--out", str(generated), "--only", args.algebra]
                run = subprocess.run(cmd, capture_output=True, text=True)
                if run.returncode:
                    raise UserError(f"building {args.algebra!r} from {args.spec_dir} failed: "
                                    f"{run.stderr.strip() or run.stdout.strip()}")
        barrier(ctx)
    return load_algebra(args.algebra, generated)


def train_config(args, ctx: Context, *, lr: float, channels_last: bool = False,
                 extra: dict | None = None) -> TrainConfig:
    """The loop's config from the parsed options (`lr`: the resolved peak learning rate)."""
    amp = args.amp or ("bf16" if ctx.device.type == "cuda" else "none")
    return TrainConfig(
        out=args.out, batch_size=args.batch_size, epochs=args.epochs, steps=args.steps, stop_at=args.stop_at,
        optimizer=args.optimizer, lr=lr, momentum=args.momentum, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, warmup_epochs=args.warmup_epochs, clip=args.clip,
        amp=amp, channels_last=channels_last, compile=args.compile, prune=args.prune,
        prune_start=args.prune_start, prune_end=args.prune_end, prune_every=args.prune_every,
        log_every=args.log_every, eval_every=args.eval_every, ckpt_every=args.ckpt_every,
        eval_batch_size=args.eval_batch_size, resume=args.resume, overwrite=args.overwrite, seed=args.seed,
        workers=args.workers, progress=not args.no_progress, fsdp=args.fsdp,
        extra={"label_smoothing": args.label_smoothing, **(extra or {})})
