"""Training throughput of the experiment scripts' models on this machine (CPU): images/s and tokens/s.

    .venv/bin/python benchmarks/bench_training.py                       # every algebra, all cases, one core
    .venv/bin/python benchmarks/bench_training.py --cases resnet50 --algebras R,H --rounds 3
    .venv/bin/python benchmarks/bench_training.py --json out.json
    python benchmarks/bench_training.py --device cuda --clock wall --amp bf16 --cases resnet50,enwik8 --image-size 224 \
        --image-batch 128 --lm-batch 32                                   # on a GPU

A step is what `examples/training/loop.py` does per batch minus data loading: the task's loss
(`ImageTask.loss` / `LMTask.loss`) on a batch already in memory, backward, and the optimizer step
(SGD + Nesterov for the ResNet, AdamW for the LMs), float32.  The models are built exactly as the scripts
build them (`examples.imagenet.build_model`, `examples.lm.build_model`, parameters matched per layer).
Each algebra is timed interleaved with R, round by round (two models in memory at a time); the table gives
medians of the steps and of the per-round ratio to R, so load changes on a shared machine hit both alike.
By default the clock is the process's CPU time on one thread, i.e. the throughput of one core, which other
processes competing for the cores do not inflate (use --clock wall on a GPU or an idle machine).

Cases
  resnet50   ResNet-50 (bottleneck 3-4-6-3, base width 64, ImageNet stem, 1000 classes), by default batch 16
             at 64 x 64 pixels (a 224 x 224 image costs (224/64)^2 = 12.25x the convolution work).
  enwik8     TransformerLM d_model 512 (real), 12 layers, 8 heads, d_ff 2048, vocabulary 256, by default
             batch 1 x 512 tokens.
  pipeline   the built-in Pillow image pipeline (decode a 500 x 375 JPEG, random-resized crop to 224,
             flip, to a uint8 tensor) per DataLoader worker, on noise images (slower to decode than photos).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench_layers import ALGEBRAS, ensure_built, interleaved, machine  # noqa: E402

CASES = ("resnet50", "enwik8", "pipeline")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(amp: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")


def image_step(algebra: str, batch: int, size: int, device: torch.device, amp: str):
    from examples.imagenet import ImageTask, build_model
    from examples.training.loop import param_groups

    torch.manual_seed(0)
    model = build_model(algebra, "resnet50", 1000, "params", image_size=size)
    task = ImageTask(model, None, None, 0.1, False, {"algebra": algebra, "arch": "resnet50"})
    cpu_model = model
    model = model if device.type == "cpu" else copy.deepcopy(model).to(device)
    opt = torch.optim.SGD(param_groups(model, 5e-5), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with _autocast(amp, device):
            loss, _ = task.loss(model, (x, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
    return step, cpu_model


def lm_step(algebra: str, vocab: int, batch: int, seq_len: int, device: torch.device, amp: str):
    from examples.lm import build_model
    from examples.training.loop import param_groups

    torch.manual_seed(0)
    cpu_model = build_model(algebra, vocab, 512, 12, 8, 2048, seq_len, "params")
    model = cpu_model if device.type == "cpu" else copy.deepcopy(cpu_model).to(device)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4)
    tokens = torch.randint(0, vocab, (batch, seq_len + 1), device=device)

    def step():
        with _autocast(amp, device):
            logits = model(tokens[:, :-1]).float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
    return step, cpu_model


def _build(case: str, algebra: str, args):
    """(step, counts) for one algebra's model in `case`."""
    from runtime import counting

    device = torch.device(args.device)
    if case == "resnet50":
        step, model = image_step(algebra, args.image_batch, args.image_size, device, args.amp)
        at = counting.count(model, torch.randn(1, 3, args.image_size, args.image_size))
        at224 = counting.count(model, torch.randn(1, 3, 224, 224))
        return step, dict(items=args.image_batch, unit="images", params=at.params, macs_naive=at.total_macs("naive"),
                          macs_scheme=at.total_macs("bilinear"), macs_naive_224=at224.total_macs("naive"),
                          macs_scheme_224=at224.total_macs("bilinear"))
    step, model = lm_step(algebra, 256, args.lm_batch, 512, device, args.amp)
    at = counting.count(model, torch.zeros(1, 512, dtype=torch.long))
    return step, dict(items=args.lm_batch * 512, unit="tokens", params=at.params,
                      macs_naive=at.total_macs("naive") // 512, macs_scheme=at.total_macs("bilinear") // 512)


def model_case(case: str, algebras: list[str], args) -> list[dict]:
    """Each algebra timed interleaved with R (two models in memory at a time): rate and rate / R."""
    r_step, r_info = _build(case, "R", args)
    r_times: list[float] = []
    out = []

    def row(algebra: str, info: dict, t: float, rel: float) -> dict:
        r = dict(case=case, algebra=algebra, seconds_per_step=t, per_second=info["items"] / t, vs_R=rel, **info)
        print(f"  {case} {algebra}: {r['per_second']:,.1f} {info['unit']}/s ({rel:.2f} x R)", flush=True)
        return r

    for a in algebras:
        if a == "R":
            continue
        step, info = _build(case, a, args)
        times = interleaved({"R": r_step, a: step}, args.rounds, clock=CLOCKS[args.clock])
        r_times += times["R"]
        out.append(row(a, info, statistics.median(times[a]), statistics.median(r / x for r, x in
                                                                              zip(times["R"], times[a]))))
        del step
    if not r_times:
        r_times = interleaved({"R": r_step}, args.rounds, clock=CLOCKS[args.clock])["R"]
    return [row("R", r_info, statistics.median(r_times), 1.0)] + out


def pipeline_case(rounds: int, clock) -> list[dict]:
    import numpy as np
    from PIL import Image

    from examples.training import images

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(32):
            (Path(tmp) / "c").mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(Path(tmp) / "c" / f"{i}.jpg",
                                                                                     quality=90)
        out = []
        for kind, tf in (("train", images.train_transform(224, False)), ("eval", images.eval_transform(224, False))):
            ds = images.ImageFolder(tmp, tf)
            ts = []
            for _ in range(rounds):
                t = clock()
                for i in range(len(ds)):
                    ds[i]
                ts.append((clock() - t) / len(ds))
            out.append(dict(case="pipeline", algebra="-", kind=kind, seconds_per_image=statistics.median(ts),
                            per_second=1 / statistics.median(ts), unit="images"))
        return out


def table(rows: list[dict]) -> str:
    """Markdown tables, one per case."""
    text = ""
    for case in CASES:
        rs = [r for r in rows if r["case"] == case]
        if not rs:
            continue
        if case == "pipeline":
            text += "\n| pipeline (1 worker) | images/s |\n|---|---|\n"
            text += "".join(f"| {r['kind']} | {r['per_second']:.0f} |\n" for r in rs)
            continue
        unit = rs[0]["unit"]
        text += (f"\n| {case} | params | MACs/{unit[:-1]} naive | MACs/{unit[:-1]} scheme | s/step | {unit}/s | "
                 f"vs R |\n|---|---|---|---|---|---|---|\n")
        for r in rs:
            text += (f"| {r['algebra']} | {r['params']:,} | {r['macs_naive']:,} | {r['macs_scheme']:,} | "
                     f"{r['seconds_per_step']:.2f} | {r['per_second']:,.1f} | {r['vs_R']:.2f} |\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--algebras", default=",".join(ALGEBRAS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                   help="cpu: this process's CPU time (steady on a shared machine; with 1 thread = one core's "
                        "time); wall: elapsed time (use on GPU and on an idle machine)")
    p.add_argument("--amp", choices=("none", "bf16"), default="none")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--image-batch", type=int, default=16)
    p.add_argument("--lm-batch", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ensure_built()
    algebras = [a for a in args.algebras.split(",") if a]
    rows = []
    for case in args.cases.split(","):
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}: {', '.join(CASES)}")
        print(f"{case} ...", flush=True)
        rows += (pipeline_case(args.rounds, CLOCKS[args.clock]) if case == "pipeline"
                 else model_case(case, algebras, args))
        if args.json:                               # after every case, so an interrupted run keeps its results
            args.json.write_text(json.dumps(rows, indent=1))
    print(f"\n{machine()}\n{args.device}, amp {args.amp}, {args.threads} thread(s), {args.clock} clock, medians of "
          f"{args.rounds} interleaved rounds after one warm-up")
    print(table(rows))


if __name__ == "__main__":
    main()
