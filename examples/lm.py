"""Train an AlgebraNet Transformer language model on enwik8 (bits per byte) or WikiText-103 (perplexity).

    python -m examples.lm --dataset enwik8 --data /data/enwik8 --algebra H --out runs/H-enwik8
    torchrun --nproc_per_node 8 -m examples.lm --dataset wikitext103 --data /data/wikitext-103 \\
        --algebra M2R --batch-size 16 --out runs/M2R-wt103              # 8 GPUs
    python -m examples.lm ... --resume                                  # continue from OUT/checkpoint.pt

enwik8: --data is the file `enwik8` (or `enwik8.zip`, or their folder): the first 10^8 bytes, split
90 M / 5 M / 5 M into train / valid / test; bytes are the tokens; metric bits per byte.
WikiText-103: --data is the folder with wiki.{train,valid,test}.tokens; word-level vocabulary from the
training split (`<unk>` for the rest), `<eos>` per line; metric perplexity.

The model is `runtime.models.TransformerLM` over the algebra with d_model and d_ff matched to the real
model's (--d-model, --d-ff in real channels; --match params|macs|width|none as for the ResNet);
embeddings and the read-out are real.  Training: AdamW (or --optimizer sgd: Nesterov), linear warmup then
cosine decay, gradient clipping, optional label smoothing and element pruning, bf16 autocast on GPU.
Each evaluation scores the validation split and prints a sample from `TransformerLM.generate` (KV cache)
continuing the start of the validation text (also written to OUT/samples.txt); the end also scores test.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from runtime import counting
from runtime.models import TransformerLM, matched_width

from .training import distributed
from .training.cli import nonnegative_float, nonnegative_int, positive_int, probability
from .training.cli import run as run_cli
from .training.loop import Task, train
from .training.matching import search_width
from .training.options import add_arguments, launch, resolve_algebra, train_config
from .training.sampling import sample_seed
from .training.text import EvalWindows, TokenData, TrainWindows, load_enwik8, load_wikitext

DATASETS = ("enwik8", "wikitext103")


def lm_model(algebra, vocab_size: int, elements: int, ff_elements: int, n_layers: int, n_heads: int,
             seq_len: int, dropout: float = 0.0, method: str | None = None) -> TransformerLM:
    return TransformerLM(vocab_size, d_model=elements, n_layers=n_layers, n_heads=n_heads, d_ff=ff_elements,
                         max_len=seq_len, algebra=algebra, dropout=dropout, method=method)


def build_model(algebra, vocab_size: int, d_model: int, n_layers: int, n_heads: int, d_ff: int, seq_len: int,
                match: str | None = "params", macs_method: str = "bilinear", dropout: float = 0.0,
                method: str | None = None, scope: str = "layers") -> TransformerLM:
    """TransformerLM over `algebra` matched to the real one with d_model / d_ff real channels: per layer
    (d_model and d_ff become element counts, d_model a multiple of n_heads) or, with scope "model", the
    width whose whole model (real embeddings and read-out included) matches the real model's total."""
    elements = matched_width(d_model, algebra, match, macs_method, multiple_of=n_heads)
    if scope == "layers":
        return lm_model(algebra, vocab_size, elements, matched_width(d_ff, algebra, match, macs_method), n_layers,
                        n_heads, seq_len, dropout, method)
    real = lm_model("R", vocab_size, d_model, d_ff, n_layers, n_heads, seq_len)
    _, model = search_width(lambda w: lm_model(algebra, vocab_size, w, max(1, round(w * d_ff / d_model)), n_layers,
                                               n_heads, seq_len, dropout, method),
                            real, match, elements, torch.zeros(1, seq_len, dtype=torch.long), macs_method, n_heads)
    return model


class LMTask(Task):
    unit = "tokens"
    sums = ("nats", "tokens")

    def __init__(self, model: TransformerLM, data: TokenData, dataset: str, seq_len: int, label_smoothing: float,
                 sample: dict, identity: dict):
        self.name = f"{identity['algebra']} {dataset}"
        self.model, self.data, self.dataset = model, data, dataset
        self.train_set = TrainWindows(data.splits["train"], seq_len)
        self.eval_sets = {"valid": EvalWindows(data.splits["valid"], seq_len)}
        self.final_sets = {"test": EvalWindows(data.splits["test"], seq_len)}
        self.metrics = ("loss", "bpb") if dataset == "enwik8" else ("loss", "ppl")
        self.label_smoothing, self.sample, self.identity = label_smoothing, sample, identity
        self.seq_len = seq_len

    def prepare(self, batch, device):
        return batch.to(device, non_blocking=True)

    def loss(self, model, batch):
        logits = model(batch[:, :-1]).float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                               label_smoothing=self.label_smoothing)
        return loss, batch[:, 1:].numel()

    def eval_sums(self, model, batch):
        logits = model(batch[:, :-1]).float()
        nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
        return {"nats": nats, "tokens": torch.tensor(batch[:, 1:].numel(), device=batch.device)}

    def finish(self, sums):
        loss = sums["nats"] / max(sums["tokens"], 1.0)
        if self.dataset == "enwik8":
            return {"loss": loss, "bpb": loss / math.log(2)}
        return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}

    def after_eval(self, model: nn.Module, step: int, out: Path) -> str | None:
        """A sample continuing the start of the validation text (seeded by step: reproducible)."""
        n_new = self.sample["tokens"]
        if n_new <= 0:
            return None
        prompt_len = min(64, self.seq_len // 2)
        n_new = min(n_new, self.seq_len - prompt_len)
        device = next(model.parameters()).device
        prompt = self.data.splits["valid"][:prompt_len].long().to(device)[None]
        gen = torch.Generator(device=device).manual_seed(sample_seed(self.identity["seed"], step))
        ids = model.generate(prompt, n_new, temperature=self.sample["temperature"], top_k=self.sample["top_k"],
                             generator=gen)[0].tolist()
        text = f"{self.data.decode(ids[:prompt_len])} >>> {self.data.decode(ids[prompt_len:])}"
        with open(out / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"--- step {step}\n{text}\n")
        return f"sample: {text!r}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.lm", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", choices=DATASETS, required=True)
    g.add_argument("--data", type=Path, required=True, help="enwik8 file (or folder), or the WikiText folder")
    g.add_argument("--cache-dir", type=Path, default=None,
                   help="where the encoded WikiText is cached (default: DATA/algebranets-cache if writable, "
                        "else OUT/data-cache)")
    g.add_argument("--d-model", type=positive_int, default=512, help="real model width (matched to elements)")
    g.add_argument("--d-ff", type=positive_int, default=None, help="real MLP width (default 4 x d-model)")
    g.add_argument("--n-layers", type=positive_int, default=12)
    g.add_argument("--n-heads", type=positive_int, default=8)
    g.add_argument("--seq-len", type=positive_int, default=512)
    g.add_argument("--dropout", type=probability, default=0.1)
    g.add_argument("--sample-tokens", type=nonnegative_int, default=200, help="tokens generated per sample (0: none)")
    g.add_argument("--temperature", type=nonnegative_float, default=0.8)
    g.add_argument("--top-k", type=positive_int, default=40)
    add_arguments(p, optimizer="adamw", lr=6e-4, weight_decay=0.1, batch_size=32, label_smoothing=0.0,
                  log_every=100, workers=2, length=("steps", 100_000))
    p.set_defaults(warmup_steps=2000, clip=1.0, eval_every=2000, ckpt_every=2000)
    return p


def _cache_dir(args) -> Path:
    if args.cache_dir is not None:
        return args.cache_dir
    folder = args.data if args.data.is_dir() else args.data.parent
    return folder / "algebranets-cache" if os.access(folder, os.W_OK) else args.out / "data-cache"


def load_data(args, ctx: distributed.Context) -> TokenData:
    """Rank 0 reads (and for WikiText encodes and caches) first; the others then read the cache."""
    def load() -> TokenData:
        return load_enwik8(args.data) if args.dataset == "enwik8" else load_wikitext(args.data, _cache_dir(args))

    data = load() if ctx.is_main else None
    distributed.barrier(ctx)
    return data if data is not None else load()


def main(argv: list[str] | None = None) -> dict[str, float]:
    return launch(parser().parse_args(argv), run)


def run(args, ctx: distributed.Context) -> dict[str, float]:
    algebra = resolve_algebra(args, ctx)
    data = load_data(args, ctx)
    match = None if args.match == "none" else args.match
    d_ff = args.d_ff or 4 * args.d_model
    torch.manual_seed(args.seed)
    model = build_model(algebra, data.vocab_size, args.d_model, args.n_layers, args.n_heads, d_ff, args.seq_len,
                        match, args.macs_method, args.dropout, args.method, args.match_scope)
    identity = dict(task="lm", dataset=args.dataset, algebra=algebra.name, dim=algebra.dim, d_model=args.d_model,
                    d_ff=d_ff, elements=model.d_model, ff_elements=model.d_ff, n_layers=args.n_layers,
                    n_heads=args.n_heads, seq_len=args.seq_len, match=args.match, match_scope=args.match_scope,
                    macs_method=args.macs_method,
                    vocab=data.vocab_size, train_tokens=len(data.splits["train"]), seed=args.seed)
    if ctx.is_main:
        rep = counting.count(model, torch.zeros(1, args.seq_len, dtype=torch.long))
        real = counting.count_params(build_model("R", data.vocab_size, args.d_model, args.n_layers, args.n_heads,
                                                 d_ff, args.seq_len, None))
        note = "" if data.standard else " (not the standard file: split in the standard proportions)"
        print(f"{algebra.name} TransformerLM ({args.match} matched per {args.match_scope}: d_model {model.d_model}, d_ff {model.d_ff} "
              f"elements): {rep.params:,} parameters (real {real:,}), "
              f"{rep.total_macs('naive') // args.seq_len:,} MACs per token naive, "
              f"{rep.total_macs('bilinear') // args.seq_len:,} with the scheme; {args.dataset}{note}: "
              + ", ".join(f"{k} {len(v):,}" for k, v in data.splits.items())
              + f" tokens, vocabulary {data.vocab_size:,}; {ctx.world} process(es) on {ctx.device.type}", flush=True)
    sample = {"tokens": args.sample_tokens, "temperature": args.temperature, "top_k": args.top_k}
    task = LMTask(model, data, args.dataset, args.seq_len, args.label_smoothing, sample, identity)
    return train(task, train_config(args, ctx, lr=args.lr), ctx)


def cli() -> int:
    """The `algebranets-lm` command: `main` with one-line errors."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
