"""Train an AlgebraNet ResNet on ImageNet, or on any image folder in the same layout.

    python -m examples.imagenet --data /data/imagenet --algebra H --arch resnet50 --out runs/H-r50
    torchrun --nproc_per_node 8 -m examples.imagenet --data /data/imagenet --algebra H --arch resnet50 \\
        --batch-size 128 --out runs/H-r50                       # 8 GPUs, 1024 images per step
    python -m examples.imagenet ... --resume                    # continue from runs/H-r50/checkpoint.pt

--data holds train/<class>/<image> and val/<class>/<image> (the usual ImageFolder layout; val classes
are numbered as in train).  The network is the project's ResNet over the algebra (`runtime.models.resnet`)
with every stage width matched to the real ResNet's (--match params: equal parameters; macs: equal
multiply-adds of --macs-method; width: equal real width; none: one element per real channel), or
`--arch tv:resnet50` etc.: torchvision's model converted with `runtime.models.convert` (needs
torchvision).  Training: SGD with Nesterov momentum, linear warmup then cosine decay, label smoothing,
weight decay off for biases and norms, bf16 autocast and channels-last on GPU, optional element pruning
on a cubic schedule (--prune 0.9).  Evaluation: top-1 / top-5 on val.  Writes OUT/log.csv,
OUT/checkpoint.pt, OUT/summary.json.  See docs/experiments.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from runtime import counting
from runtime.models import convert, matched_width, matched_widths, resnet

from .training import distributed, images
from .training.cli import UserError, positive_int
from .training.cli import run as run_cli
from .training.loop import Task, train
from .training.matching import search_width
from .training.options import add_arguments, launch, resolve_algebra, train_config

ARCHS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
         "resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet101": ("bottleneck", (3, 4, 23, 3)),
         "resnet152": ("bottleneck", (3, 8, 36, 3))}


def resnet_model(algebra, arch: str, widths, stem_width: int, num_classes: int, stem: str = "imagenet",
                 norm: str = "component", method: str | None = None, zero_init_residual: bool = True) -> nn.Module:
    if arch not in ARCHS:
        raise ValueError(f"unknown --arch {arch!r}: one of {', '.join(ARCHS)} or tv:<torchvision model>")
    block, layers = ARCHS[arch]
    return resnet(algebra, block, layers, widths, stem, num_classes=num_classes, stem_width=stem_width, norm=norm,
                  method=method, zero_init_residual=zero_init_residual)


def build_model(algebra, arch: str, num_classes: int, match: str | None = "params", macs_method: str = "bilinear",
                base_width: int = 64, stem: str = "imagenet", norm: str = "component", method: str | None = None,
                scope: str = "layers", image_size: int = 224) -> nn.Module:
    """The algebra ResNet `arch` matched to the real one with stage widths base_width x (1, 2, 4, 8): every
    stage's width matched on its own, or (scope "model") the base width whose whole network matches the
    real network's parameters or multiply-adds at `image_size`.  "tv:<name>" converts torchvision's model."""
    if arch.startswith("tv:"):
        if not images.torchvision_available():
            raise RuntimeError(f"--arch {arch} needs torchvision, which does not import here; use one of "
                               f"{', '.join(ARCHS)}")
        if scope != "layers":
            raise ValueError("--arch tv:... converts layer by layer: use --match-scope layers")
        import torchvision

        real = getattr(torchvision.models, arch[3:])(num_classes=num_classes)
        return convert(real, algebra, match=match, method_for_macs=macs_method, layer_method=method)
    real_widths = tuple(base_width * m for m in (1, 2, 4, 8))
    rest = dict(num_classes=num_classes, stem=stem, norm=norm, method=method)
    guess = matched_width(base_width, algebra, match, macs_method)
    if scope == "layers":
        return resnet_model(algebra, arch, matched_widths(real_widths, algebra, match, macs_method), guess, **rest)
    real = resnet_model("R", arch, real_widths, base_width, num_classes, stem, norm)
    _, model = search_width(lambda w: resnet_model(algebra, arch, tuple(w * m for m in (1, 2, 4, 8)), w, **rest),
                            real, match, guess, torch.randn(1, 3, image_size, image_size), macs_method)
    return model


class ImageTask(Task):
    unit = "images"
    sums = ("loss", "top1", "top5", "count")
    metrics = ("loss", "top1", "top5")

    def __init__(self, model: nn.Module, train_set, val_set, label_smoothing: float, channels_last: bool,
                 identity: dict):
        self.name = f"{identity['algebra']} {identity['arch']}"
        self.model, self.train_set = model, train_set
        self.eval_sets, self.final_sets = {"val": val_set}, {}
        self.label_smoothing, self.channels_last = label_smoothing, channels_last
        self.identity = identity

    def prepare(self, batch, device):
        x, y = batch
        return images.normalize(x, device, self.channels_last), y.to(device, non_blocking=True)

    def loss(self, model, batch):
        x, y = batch
        return F.cross_entropy(model(x).float(), y, label_smoothing=self.label_smoothing), len(y)

    def eval_sums(self, model, batch):
        x, y = batch
        logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices == y[:, None]
        return {"loss": F.cross_entropy(logits, y, reduction="sum"), "top1": top[:, 0].sum(),
                "top5": top.any(1).sum(), "count": torch.tensor(len(y), device=y.device)}

    def finish(self, sums):
        n = max(sums["count"], 1.0)
        return {"loss": sums["loss"] / n, "top1": sums["top1"] / n, "top5": sums["top5"] / n}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.imagenet", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    g = p.add_argument_group("data and model")
    g.add_argument("--data", type=Path, required=True, help="folder with train/ and val/ class folders")
    g.add_argument("--arch", default="resnet50", help=f"{', '.join(ARCHS)}, or tv:<torchvision model>")
    g.add_argument("--base-width", type=positive_int, default=64, help="real width of the first stage (64 = ResNet)")
    g.add_argument("--stem", choices=("imagenet", "cifar"), default="imagenet")
    g.add_argument("--norm", choices=("component", "whitening", "norm"), default="component")
    g.add_argument("--image-size", type=positive_int, default=224)
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: on CUDA)")
    g.add_argument("--torchvision", action=argparse.BooleanOptionalAction, default=None,
                   help="torchvision's ImageFolder and transforms (default: when it imports)")
    add_arguments(p, optimizer="sgd", lr=None, weight_decay=5e-5, batch_size=128, label_smoothing=0.1,
                  log_every=50, workers=8, length=("epochs", 90))
    p.set_defaults(warmup_epochs=5.0)
    return p


def main(argv: list[str] | None = None) -> dict[str, float]:
    return launch(parser().parse_args(argv), run)


def run(args, ctx: distributed.Context) -> dict[str, float]:
    for split in ("train", "val"):
        if not (args.data / split).is_dir():
            raise FileNotFoundError(f"--data {args.data} has no {split}/ folder (expected {args.data}/{split}/"
                                    f"<class>/<image>)")
    use_tv = images.torchvision_available() if args.torchvision is None else args.torchvision
    if use_tv and not images.torchvision_available():
        raise UserError("--torchvision was asked for but torchvision does not import here")
    algebra = resolve_algebra(args, ctx)
    match = None if args.match == "none" else args.match
    train_set = images.image_folder(args.data / "train", images.train_transform(args.image_size, use_tv), None,
                                    use_tv)
    val_set = images.image_folder(args.data / "val", images.eval_transform(args.image_size, use_tv),
                                  train_set.classes, use_tv)
    num_classes = len(train_set.classes)
    torch.manual_seed(args.seed)
    model = build_model(algebra, args.arch, num_classes, match, args.macs_method, args.base_width, args.stem,
                        args.norm, args.method, args.match_scope, args.image_size)
    channels_last = ctx.device.type == "cuda" if args.channels_last is None else args.channels_last
    identity = dict(task="imagenet", algebra=algebra.name, dim=algebra.dim, arch=args.arch,
                    base_width=args.base_width, match=args.match, match_scope=args.match_scope, macs_method=args.macs_method, stem=args.stem,
                    norm=args.norm, image_size=args.image_size, classes=num_classes, train_images=len(train_set),
                    pipeline="torchvision" if use_tv else "built-in", seed=args.seed)
    if ctx.is_main:
        rep = counting.count(model, torch.randn(1, 3, args.image_size, args.image_size))
        real = counting.count_params(build_model("R", args.arch, num_classes, None, base_width=args.base_width,
                                                 stem=args.stem))
        print(f"{identity['algebra']} {args.arch} ({args.match} matched per {args.match_scope}): {rep.params:,} parameters (real "
              f"{real:,}), {rep.total_macs('naive'):,} MACs per image naive, {rep.total_macs('bilinear'):,} "
              f"with the scheme; {len(train_set):,} train / {len(val_set):,} val images, {num_classes} classes, "
              f"{identity['pipeline']} image pipeline; {ctx.world} process(es) on {ctx.device.type}", flush=True)
    lr = args.lr if args.lr is not None else 0.1 * args.batch_size * ctx.world / 256
    task = ImageTask(model, train_set, val_set, args.label_smoothing, channels_last, identity)
    return train(task, train_config(args, ctx, lr=lr, channels_last=channels_last), ctx)


def cli() -> int:
    """The `algebranets-imagenet` command: `main` with one-line errors."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
