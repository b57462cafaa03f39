"""A multi-seed, multi-width study of every algebra against R on the bundled data.

    python -m examples.study                      # 9 algebras x 3 widths x 3 seeds x 2 tasks; ~1 h on 2 cores
    python -m examples.study --jobs 1 --out my_study --seeds 0,1 --algebras R,H,M2R
    make study

The tasks, data, models and training are those of `examples.compare` (scikit-learn digits with a small
ResNet, test accuracy; a character Transformer on CPython's help texts, test bits per character), here
at three real widths per task, each algebra's width matched to R's parameter count at that width, and
with three seeds (a seed fixes the digits split, the initialisation and the batch order).  Every run
writes one JSON file into OUT/runs/ and an interrupted study picks up where it stopped (runs with a file
are skipped; a different budget in the same folder is refused).  At the end OUT gets runs.csv (every
run), summary.csv and summary.md (mean ± sample std over seeds, and the paired difference to R at the
same width and seed) and study.png (each metric against parameters and against multiply-adds, with
error bars).  Each run uses one torch thread; --jobs runs that many at once.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from . import compare
from .training.cli import UserError, int_list, names, positive_int
from .training.cli import run as run_cli
from .training.plots import log_x
from .training.results import plus_minus, save_json

TASKS = ("digits", "text")
METRIC = {"digits": "accuracy", "text": "bits_per_char"}
HIGHER_IS_BETTER = {"digits": True, "text": False}


@dataclass(frozen=True)
class StudyBudget:
    digits_epochs: int = 15
    lm_steps: int = 500
    digits_widths: tuple[int, ...] = (8, 16, 32)     # real width of the ResNet's first stage
    text_widths: tuple[int, ...] = (32, 48, 64)      # real d_model


@dataclass(frozen=True)
class Run:
    task: str
    algebra: str
    real_width: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.task}-{self.algebra}-w{self.real_width}-s{self.seed}"


def plan(algebras, seeds, budget: StudyBudget, tasks=TASKS) -> list[Run]:
    widths = {"digits": budget.digits_widths, "text": budget.text_widths}
    return [Run(t, a, w, s) for t in tasks for a in algebras for w in widths[t] for s in seeds]


# ------------------------------------------------------------------------------------------ one run

_DATA: dict = {}


def _worker_init() -> None:
    torch.set_num_threads(1)


def execute(run: Run, budget: StudyBudget) -> dict:
    """Train and score one (task, algebra, width, seed); the row written to runs/<key>.json."""
    torch.set_num_threads(1)
    from runtime import counting, load_algebra

    A = load_algebra(run.algebra)
    torch.manual_seed(run.seed)
    start = time.perf_counter()
    if run.task == "digits":
        if ("digits", run.seed) not in _DATA:
            _DATA[("digits", run.seed)] = compare.digits_data(run.seed)
        data = _DATA[("digits", run.seed)]
        target = counting.count_params(compare.digits_model("R", run.real_width))
        torch.manual_seed(run.seed)
        width, model = compare.matched(lambda w: compare.digits_model(run.algebra, w), run.algebra, run.real_width,
                                       target)
        rep = counting.count(model, data[0][:1])
        start = time.perf_counter()
        metric = compare.train_digits(model, data, budget.digits_epochs, run.seed, run.key)
    else:
        if "text" not in _DATA:
            _DATA["text"] = compare.text_data()
        train, test, vocab = _DATA["text"]
        lm_budget = compare.Budget(digits_epochs=budget.digits_epochs, lm_steps=budget.lm_steps)
        target = counting.count_params(compare.lm_model("R", run.real_width, vocab, lm_budget.seq_len))
        torch.manual_seed(run.seed)
        width, model = compare.matched(lambda w: compare.lm_model(run.algebra, w, vocab, lm_budget.seq_len),
                                       run.algebra, run.real_width, target, multiple_of=compare.LM_HEADS)
        rep = counting.count(model, train[: lm_budget.seq_len].unsqueeze(0))
        start = time.perf_counter()
        metric = compare.train_lm(model, train, test, lm_budget, run.seed, run.key)
    return dict(**asdict(run), dim=A.dim, rank=A.rank, width=width, params=rep.params,
                macs_naive=rep.total_macs("naive"), macs_scheme=rep.total_macs("bilinear"),
                metric=METRIC[run.task], value=metric, seconds=time.perf_counter() - start,
                budget=asdict(budget))


def _run_and_save(run: Run, budget: StudyBudget, runs_dir: Path) -> dict:
    row = execute(run, budget)
    save_json(runs_dir / f"{run.key}.json", row)
    return row


def load_runs(runs_dir: Path, budget: StudyBudget) -> dict[str, dict]:
    """The finished runs in `runs_dir`; refuses files made with another budget."""
    rows = {}
    for path in sorted(runs_dir.glob("*.json")):
        row = json.loads(path.read_text())
        saved = row["budget"]
        saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
        if saved != asdict(budget):
            raise ValueError(f"{path} was made with budget {saved}, this study uses {asdict(budget)}: "
                             f"use another --out (or the same budget options)")
        rows[path.stem] = row
    return rows


# ------------------------------------------------------------------------------------------ summary

def summarise(rows: list[dict]) -> list[dict]:
    """Per (task, algebra, real width): means and sample standard deviations over seeds, and the paired
    difference to R (same task, width and seed)."""
    by = {}
    for r in rows:
        by.setdefault((r["task"], r["algebra"], r["real_width"]), []).append(r)
    base = {(r["task"], r["real_width"], r["seed"]): r["value"] for r in rows if r["algebra"] == "R"}
    out = []
    for (task, alg, rw), rs in by.items():
        vals = [r["value"] for r in rs]
        diffs = [r["value"] - base[(task, rw, r["seed"])] for r in rs if (task, rw, r["seed"]) in base]
        out.append(dict(task=task, algebra=alg, real_width=rw, width=rs[0]["width"], params=rs[0]["params"],
                        macs_naive=rs[0]["macs_naive"], macs_scheme=rs[0]["macs_scheme"], metric=rs[0]["metric"],
                        seeds=len(vals), mean=statistics.fmean(vals),
                        std=statistics.stdev(vals) if len(vals) > 1 else float("nan"),
                        diff_vs_R=statistics.fmean(diffs) if diffs else float("nan"),
                        diff_std=statistics.stdev(diffs) if len(diffs) > 1 else float("nan"),
                        seconds=statistics.fmean(r["seconds"] for r in rs)))
    order = {a: i for i, a in enumerate(compare.ALGEBRAS)}
    out.sort(key=lambda s: (TASKS.index(s["task"]), order.get(s["algebra"], len(order)), s["algebra"],
                            s["real_width"]))
    return out


def markdown(summary: list[dict], budget: StudyBudget, seeds: int) -> str:
    text = ""
    for task in TASKS:
        rows = [s for s in summary if s["task"] == task]
        if not rows:
            continue
        widths = sorted({s["real_width"] for s in rows})
        label = "test accuracy" if task == "digits" else "test bits per character"
        text += (f"\n### {task}: {label} (mean ± std over {seeds} seeds; Δ R: paired difference to R)\n\n"
                 "| algebra | " + " | ".join(f"R width {w}: width | params | MACs scheme | {METRIC[task]} | Δ R"
                                            for w in widths) + " |\n|---|" + "---|---|---|---|---|" * len(widths) + "\n")
        for alg in dict.fromkeys(s["algebra"] for s in rows):
            cells = []
            for w in widths:
                s = next((s for s in rows if s["algebra"] == alg and s["real_width"] == w), None)
                if s is None:
                    cells.append("| | | | ")
                    continue
                d = 3 if task == "digits" else 3
                delta = "—" if alg == "R" else plus_minus(s["diff_vs_R"], s["diff_std"], f".{d}f")
                cells.append(f"{s['width']} | {s['params']:,} | {s['macs_scheme']:,} | {plus_minus(s['mean'], s['std'], f'.{d}f')} | "
                             f"{delta}")
            text += f"| {alg} | " + " | ".join(cells) + " |\n"
    text += (f"\nBudget: digits {budget.digits_epochs} epochs, text {budget.lm_steps} steps (batch 32 × 64 "
             f"characters). Widths count algebra elements, matched to R's parameter count at each R width. "
             f"MACs scheme: real multiply-adds per example with the algebra's bilinear scheme (rank r).\n")
    return text


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    markers = "os^vD<>ph*P"
    for row, task in enumerate(TASKS):
        rows = [s for s in summary if s["task"] == task]
        for col, (xk, xl) in enumerate((("params", "parameters"), ("macs_scheme", "multiply-adds per example (scheme)"))):
            ax = axes[row, col]
            for i, alg in enumerate(dict.fromkeys(s["algebra"] for s in rows)):
                pts = sorted((s for s in rows if s["algebra"] == alg), key=lambda s: s[xk])
                ax.errorbar([s[xk] for s in pts], [s["mean"] for s in pts],
                            yerr=[0 if not math.isfinite(s["std"]) else s["std"] for s in pts],
                            marker=markers[i % len(markers)], capsize=3, label=alg,
                            linestyle="--" if alg == "R" else "-", linewidth=2 if alg == "R" else 1)
            log_x(ax)                                          # 1-2-5 ticks, compact labels
            ax.set_xlabel(xl)
            ax.set_ylabel(("digits test accuracy" if task == "digits" else "text bits per character (lower is better)"))
            ax.grid(alpha=0.3, which="both")
        axes[row, 0].legend(fontsize=8, ncol=3)
    fig.suptitle("AlgebraNets at several widths (parameters matched to R at each), mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(rows: list[dict], out: Path, budget: StudyBudget) -> list[dict]:
    cols = ["task", "algebra", "real_width", "seed", "dim", "rank", "width", "params", "macs_naive", "macs_scheme",
            "metric", "value", "seconds"]
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(sorted(rows, key=lambda r: (r["task"], r["algebra"], r["real_width"], r["seed"])))
    summary = summarise(rows)
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0]))
        w.writeheader()
        w.writerows(summary)
    seeds = max(s["seeds"] for s in summary)
    (out / "summary.md").write_text(markdown(summary, budget, seeds))
    plot(summary, out / "study.png")
    return summary


# --------------------------------------------------------------------------------------------- main

def _widths(s: str) -> tuple[int, ...]:
    values = int_list(s)
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"widths must be >= 1, got {s!r}")
    return values


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m examples.study", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/study"))
    p.add_argument("--algebras", type=names, default=list(compare.ALGEBRAS))
    p.add_argument("--tasks", type=names, default=list(TASKS))
    p.add_argument("--seeds", type=int_list, default=(0, 1, 2))
    p.add_argument("--digits-epochs", type=positive_int, default=StudyBudget.digits_epochs)
    p.add_argument("--lm-steps", type=positive_int, default=StudyBudget.lm_steps)
    p.add_argument("--digits-widths", type=_widths, default=StudyBudget.digits_widths)
    p.add_argument("--text-widths", type=_widths, default=StudyBudget.text_widths)
    p.add_argument("--jobs", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="runs at once (one thread each)")
    args = p.parse_args(argv)
    bad = [t for t in args.tasks if t not in TASKS]
    if bad:
        raise UserError(f"unknown task(s) {', '.join(bad)}: choose from {', '.join(TASKS)}")
    budget = StudyBudget(args.digits_epochs, args.lm_steps, args.digits_widths, args.text_widths)
    runs_dir = args.out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    done = load_runs(runs_dir, budget)
    todo = [r for r in plan(args.algebras, args.seeds, budget, args.tasks) if r.key not in done]
    print(f"{len(done)} runs done, {len(todo)} to go ({args.jobs} at once) -> {args.out}", flush=True)
    # the widest text runs first, so the parallel jobs finish together
    todo.sort(key=lambda r: (r.task != "text", -r.real_width, r.algebra, r.seed))
    start = time.perf_counter()
    if todo:
        if args.jobs <= 1:
            _worker_init()
            for i, run in enumerate(todo, 1):
                row = _run_and_save(run, budget, runs_dir)
                print(f"[{i}/{len(todo)}] {run.key}: {row['value']:.4f} ({row['seconds']:.0f}s)", flush=True)
        else:
            os.environ["TQDM_DISABLE"] = "1"    # the workers inherit it: no interleaved progress bars
            with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_worker_init) as ex:
                futures = {ex.submit(_run_and_save, run, budget, runs_dir): run for run in todo}
                for i, fut in enumerate(futures, 1):
                    row = fut.result()
                    print(f"[{i}/{len(todo)}] {futures[fut].key}: {row['value']:.4f} ({row['seconds']:.0f}s)",
                          flush=True)
    rows = [r for r in load_runs(runs_dir, budget).values()
            if r["algebra"] in args.algebras and r["task"] in args.tasks and r["seed"] in args.seeds]
    summary = write_outputs(rows, args.out, budget)
    print(markdown(summary, budget, len(args.seeds)))
    print(f"{time.perf_counter() - start:.0f}s; results in {args.out.resolve()} (runs/, runs.csv, summary.csv, "
          f"summary.md, study.png)")
    return summary


def cli() -> int:
    """The `algebranets-study` command: `main` with one-line errors."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
