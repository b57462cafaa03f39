"""Compare AlgebraNets over every algebra against the real baseline on real data, at matched parameters.

    python -m examples.compare                 # R and the nine algebras, about 12 minutes on 2 CPU cores
    python -m examples.compare --quick         # fewer steps, about 2 minutes
    python -m examples.compare --algebras R,C,H --epochs 5 --seed 1 --out my_results

Two tasks, both on data that ships with an installed package:
  digits  scikit-learn's 8x8 handwritten digits (1,797 images); a small ResNet (CIFAR stem, two basic-block
          stages); test accuracy.
  text    a character-level language model on the help texts shipped with CPython (`pydoc_data.topics`);
          a 2-layer decoder-only Transformer; test bits per character.
For each algebra the width (in elements) is chosen so the whole model's parameter count is closest to the
real baseline's.  The table reports parameters, multiply-adds per example with the naive product (k per
element pair) and with the algebra's bilinear scheme (rank r), accuracy / bits per character and training
time.  It is written as CSV and Markdown with a plot (PNG) into the output folder.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from runtime import counting, load_algebra
from runtime.models import TransformerLM, match_width, matched_width, resnet

from .training.cli import claim_run_folder, names, nonnegative_int, positive_int
from .training.cli import run as run_cli

#: the files `write_outputs` writes into --out
RESULT_FILES = ("results.csv", "results.md", "results.png")

ALGEBRAS = ("R", "C", "Dual", "Cross3", "H", "M2R", "M3R", "M4R", "M2C", "O")


@dataclass
class Budget:
    digits_epochs: int
    lm_steps: int
    lm_batch: int = 32
    seq_len: int = 64


FULL = Budget(digits_epochs=30, lm_steps=1200)
QUICK = Budget(digits_epochs=6, lm_steps=200)


def progress(iterable, total: int, desc: str):
    """tqdm progress bar when available (the demo extra installs it), a plain iterator otherwise."""
    try:
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, ncols=100, mininterval=0.5)
    except ImportError:  # pragma: no cover
        return iterable


# ------------------------------------------------------------------------------------------------- data

def digits_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn digits as (N, 1, 8, 8) float32 in [0, 1], split 80/20 with a fixed permutation."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return x[train], y[train], x[test], y[test]


def text_data(n_train: int = 300_000, n_test: int = 30_000) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CPython's bundled help topics as a character stream; characters outside printable ASCII dropped."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))
    text = "".join(c for c in text if 32 <= ord(c) < 127 or c == "\n")
    text = text[: n_train + n_test]
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    return ids[:n_train], ids[n_train:], len(vocab)


# ----------------------------------------------------------------------------------------------- models

DIGITS_REAL_WIDTHS = (16, 32)
LM_REAL_WIDTH = 64
LM_HEADS = 2


def digits_model(algebra: str, width: int) -> nn.Module:
    return resnet(algebra, "basic", layers=(1, 1), widths=(width, 2 * width), stem="cifar", in_channels=1,
                  num_classes=10)


def lm_model(algebra: str, width: int, vocab: int, seq_len: int) -> nn.Module:
    return TransformerLM(vocab, d_model=width, n_layers=2, n_heads=LM_HEADS, d_ff=2 * width, max_len=seq_len,
                         algebra=algebra)


def matched(build, algebra: str, real_width: int, target: int, multiple_of: int = 1) -> tuple[int, nn.Module]:
    """The width whose model has the parameter count closest to the real baseline's."""
    guess = matched_width(real_width, algebra, match="params")
    lo, hi = max(1, guess // 2), guess * 2 + 2
    cands = [w for w in range(lo, hi + 1) if w % multiple_of == 0] or [multiple_of]
    return match_width(build, target, counting.count_params, cands)


# -------------------------------------------------------------------------------------------- training

def train_digits(model: nn.Module, data, epochs: int, seed: int, desc: str) -> float:
    xtr, ytr, xte, yte = data
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(ytr) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    bar = progress(range(epochs * steps_per_epoch), epochs * steps_per_epoch, desc)
    it = iter(())
    for _ in bar:
        try:
            idx = next(it)
        except StopIteration:
            it = iter(torch.randperm(len(ytr), generator=g).split(64))
            idx = next(it)
        model.train()
        loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        return (model(xte).argmax(1) == yte).float().mean().item()


def train_lm(model: nn.Module, train: torch.Tensor, test: torch.Tensor, budget: Budget, seed: int, desc: str,
             lr: float = 3e-3) -> float:
    """Train on random windows of `train` (AdamW, one-cycle schedule peaking at `lr`); test bits per token."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=budget.lm_steps)
    g = torch.Generator().manual_seed(seed)
    L = budget.seq_len
    for _ in progress(range(budget.lm_steps), budget.lm_steps, desc):
        starts = torch.randint(0, len(train) - L - 1, (budget.lm_batch,), generator=g)
        batch = torch.stack([train[s:s + L + 1] for s in starts.tolist()])
        model.train()
        loss = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return lm_bits(model, test, L)


def lm_bits(model: nn.Module, test: torch.Tensor, seq_len: int) -> float:
    """Bits per token of `model` (eval mode) on `test` cut into windows of seq_len + 1 tokens."""
    model.eval()
    L = seq_len
    windows = test[: (len(test) - 1) // (L + 1) * (L + 1)].view(-1, L + 1)
    with torch.no_grad():
        losses = [model.loss(w) for w in windows.split(64)]
        nats = sum(l.item() * len(w) for l, w in zip(losses, windows.split(64))) / len(windows)
    return nats / math.log(2)


# ---------------------------------------------------------------------------------------------- report

COLUMNS = ["algebra", "dim", "rank", "digits_width", "digits_params", "digits_macs_naive", "digits_macs_scheme",
           "digits_accuracy", "digits_seconds", "lm_width", "lm_params", "lm_macs_naive", "lm_macs_scheme",
           "lm_bits_per_char", "lm_seconds"]


def write_outputs(rows: list[dict], out: Path, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    (out / "results.md").write_text(markdown_table(rows, args))
    plot(rows, out / "results.png")


def markdown_table(rows: list[dict], args) -> str:
    head = ("| algebra | d | r | digits: width | params | MACs naive | MACs scheme | accuracy | time (s) | "
            "text: width | params | MACs naive | MACs scheme | bits/char | time (s) |\n|" + "---|" * 15 + "\n")
    body = ""
    for r in rows:
        body += (f"| {r['algebra']} | {r['dim']} | {r['rank']} | {r['digits_width']} | {r['digits_params']:,} | "
                 f"{r['digits_macs_naive']:,} | {r['digits_macs_scheme']:,} | {r['digits_accuracy']:.3f} | "
                 f"{r['digits_seconds']:.1f} | {r['lm_width']} | {r['lm_params']:,} | {r['lm_macs_naive']:,} | "
                 f"{r['lm_macs_scheme']:,} | {r['lm_bits_per_char']:.3f} | {r['lm_seconds']:.1f} |\n")
    note = (f"\nSeed {args.seed}; {'quick' if args.quick else 'full'} run; MACs are real multiply-adds per "
            f"example (digits: one 8x8 image; text: one {args.seq_len}-character window), naive = k per element "
            f"pair, scheme = the bilinear rank r.\n")
    return head + body + note


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    markers = "os^vD<>ph*"
    panels = [("digits_params", "digits_accuracy", "parameters", "digits test accuracy"),
              ("digits_macs_scheme", "digits_accuracy", "multiply-adds per image (scheme)", "digits test accuracy"),
              ("lm_params", "lm_bits_per_char", "parameters", "text bits per character (lower is better)"),
              ("lm_macs_scheme", "lm_bits_per_char", "multiply-adds per window (scheme)",
               "text bits per character (lower is better)")]
    for ax, (xk, yk, xl, yl) in zip(axes.flat, panels):
        for i, r in enumerate(rows):
            ax.scatter(r[xk], r[yk], marker=markers[i % len(markers)], s=70, label=r["algebra"])
            ax.annotate(r["algebra"], (r[xk], r[yk]), textcoords="offset points", xytext=(5, 4), fontsize=9)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=3)
    fig.suptitle("AlgebraNets at matched parameter count")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ main

def run(args) -> list[dict]:
    budget = QUICK if args.quick else FULL
    if args.epochs is not None:
        budget.digits_epochs = args.epochs
    args.seq_len = budget.seq_len
    # These models are small: one thread is as fast as two and keeps timings steady on a shared machine.
    torch.set_num_threads(args.threads)
    digits = digits_data(args.seed)
    text_train, text_test, vocab = text_data()
    torch.manual_seed(args.seed)
    base_digits = counting.count_params(digits_model("R", DIGITS_REAL_WIDTHS[0]))
    base_lm = counting.count_params(lm_model("R", LM_REAL_WIDTH, vocab, budget.seq_len))
    rows = []
    for name in args.algebras:
        A = load_algebra(name)
        torch.manual_seed(args.seed)
        dw, dm = matched(lambda w: digits_model(name, w), name, DIGITS_REAL_WIDTHS[0], base_digits)
        dcount = counting.count(dm, digits[0][:1])
        start = time.perf_counter()
        acc = train_digits(dm, digits, budget.digits_epochs, args.seed, f"{name:>6} digits")
        dsec = time.perf_counter() - start
        torch.manual_seed(args.seed)
        lw, lm = matched(lambda w: lm_model(name, w, vocab, budget.seq_len), name, LM_REAL_WIDTH, base_lm,
                         multiple_of=LM_HEADS)
        lcount = counting.count(lm, text_train[: budget.seq_len].unsqueeze(0))
        start = time.perf_counter()
        bpc = train_lm(lm, text_train, text_test, budget, args.seed, f"{name:>6} text")
        lsec = time.perf_counter() - start
        row = dict(algebra=name, dim=A.dim, rank=A.rank, digits_width=dw, digits_params=dcount.params,
                   digits_macs_naive=dcount.total_macs("naive"), digits_macs_scheme=dcount.total_macs("bilinear"),
                   digits_accuracy=acc, digits_seconds=dsec, lm_width=lw, lm_params=lcount.params,
                   lm_macs_naive=lcount.total_macs("naive"), lm_macs_scheme=lcount.total_macs("bilinear"),
                   lm_bits_per_char=bpc, lm_seconds=lsec)
        rows.append(row)
        print(f"{name:>6}: digits acc {acc:.3f} ({dcount.params:,} params, {dsec:.0f}s) | "
              f"text {bpc:.3f} bits/char ({lcount.params:,} params, {lsec:.0f}s)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (about 3 minutes on 2 cores)")
    parser.add_argument("--algebras", type=names, default=list(ALGEBRAS),
                        help="comma-separated algebra names (default: every built-in algebra)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="digits training epochs")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    args = parser.parse_args(argv)
    claim_run_folder(args.out, None, args.overwrite, RESULT_FILES)     # before the minutes of training
    start = time.perf_counter()
    rows = run(args)
    write_outputs(rows, args.out, args)
    print()
    print(markdown_table(rows, args))
    print(f"total {time.perf_counter() - start:.0f}s; results written to {args.out.resolve()} "
          f"(results.csv, results.md, results.png)")


def cli() -> int:
    """The `algebranets-compare` command: `main` with one-line errors."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
