"""A short AlgebraNet training script to copy: build a quaternion ResNet, train it, prune it, count it.

    python -m examples.train_resnet [--algebra H] [--steps 200] [--sparsity 0.8]

Data: scikit-learn's 8x8 digits (ships with the package).  Swap in your own DataLoader.
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from runtime import counting, sparsity
from runtime.models import resnet

from .training.cli import nonnegative_int, positive_int, probability
from .training.cli import run as run_cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algebra", default="H")
    parser.add_argument("--steps", type=positive_int, default=200)
    parser.add_argument("--sparsity", type=probability, default=0.8, help="final fraction of pruned weight elements")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    y = torch.tensor(digits.target)
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]

    # A ResNet whose convolutions, norms and activations live in the algebra; widths count elements.
    model = resnet(args.algebra, "basic", layers=(1, 1), widths=(8, 16), stem="cifar", in_channels=1,
                   num_classes=10)
    print(counting.count(model, x_train[:1]).table())  # parameters and multiply-adds per method

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # Zhu & Gupta cubic schedule: prune whole algebra elements between 30% and 80% of training.
    pruner = sparsity.GradualPruner(model, args.sparsity, start_step=int(0.3 * args.steps),
                                    end_step=int(0.8 * args.steps), frequency=10)
    for step in range(args.steps):
        idx = torch.randint(0, len(y_train), (64,))
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  sparsity {pruner.current_sparsity:.2f}")

    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(sparsity.format_report(model))
        dense_logits = model(x_test)
        sparsity.convert_to_block_sparse(model, min_sparsity=0.5)  # element-sparse inference form
        assert torch.allclose(model(x_test), dense_logits, atol=1e-4)
    print(f"test accuracy {accuracy:.3f}")
    print(counting.count(model, x_train[:1]).table(method="bilinear"))


def cli() -> int:
    """The `algebranets-train-resnet` command: `main` with one-line errors."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
