"""The tables and plots of examples.pareto: per-run rows -> runs.csv, summary.csv, summary.md and PNGs.

A run row (one trained model, runs/<key>.json merged with its speed/<key>.json) holds algebra, size, seed,
params, macs_naive / macs_scheme (real multiply-adds per token), bits_per_char, tokens_per_s_b1 / _b8
(greedy KV-cache generation), their ratios to R of the same size and seed, prefill_ms and peak_rss_mb.
The summary is one row per (algebra, size): mean and sample std over seeds of every measured value; a row
is Pareto-optimal when no other row (any algebra, any size) has both lower bits/char and higher batch-1
tokens/s (ties count as not dominated).
"""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from .training.plots import log_x
from .training.results import plus_minus

__all__ = ["RUN_COLUMNS", "MEASURED", "summarise", "pareto_optimal", "markdown", "plot", "write_outputs"]

RUN_COLUMNS = ["algebra", "size", "seed", "dim", "d_model_real", "n_layers", "n_heads", "width", "params",
               "macs_naive", "macs_scheme", "bits_per_char", "train_seconds", "tokens_per_s_b1", "tokens_per_s_b8",
               "ratio_b1", "ratio_b8", "prefill_ms", "prefill_ratio", "peak_rss_mb", "rss_method", "python",
               "corpus_sha256"]
#: the values averaged over seeds in the summary
MEASURED = ("bits_per_char", "tokens_per_s_b1", "tokens_per_s_b8", "ratio_b1", "ratio_b8", "prefill_ms",
            "peak_rss_mb", "train_seconds")


def _mean_std(vals: list[float]) -> tuple[float, float]:
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else float("nan"))


def summarise(rows: list[dict], algebras: list[str], sizes: list[str]) -> list[dict]:
    """One row per (algebra, size) in the given orders: the size's fixed facts, and mean / std over seeds."""
    out = []
    for alg in algebras:
        for size in sizes:
            rs = [r for r in rows if r["algebra"] == alg and r["size"] == size]
            if not rs:
                continue
            s = {k: rs[0][k] for k in ("algebra", "size", "dim", "d_model_real", "width", "params", "macs_naive",
                                       "macs_scheme")}
            s["seeds"] = len(rs)
            for k in MEASURED:
                s[k], s[f"{k}_std"] = _mean_std([float(r[k]) for r in rs])
            out.append(s)
    for s, opt in zip(out, pareto_optimal(out)):
        s["pareto"] = opt
    return out


def pareto_optimal(points: list[dict], quality: str = "bits_per_char",
                   speed: str = "tokens_per_s_b1") -> list[bool]:
    """For each point: True when no other point has lower-or-equal `quality` and higher-or-equal `speed`,
    one of them strictly (lower bits/char is better, higher tokens/s is better)."""
    def dominates(a: dict, b: dict) -> bool:
        return (a[quality] <= b[quality] and a[speed] >= b[speed]
                and (a[quality] < b[quality] or a[speed] > b[speed]))
    return [not any(dominates(q, p) for q in points if q is not p) for p in points]


def markdown(summary: list[dict], facts: str) -> str:
    head = ("| algebra | size | width | params | MACs/token (scheme) | bits/char | batch-1 tok/s | / R | "
            "batch-8 tok/s | / R | prefill ms | peak RSS MB | Pareto |\n|" + "---|" * 13 + "\n")
    body = "".join(
        f"| {s['algebra']} | {s['size']} | {s['width']} | {s['params']:,} | {s['macs_scheme']:,} | "
        f"{plus_minus(s['bits_per_char'], s['bits_per_char_std'], '.3f')} | "
        f"{plus_minus(s['tokens_per_s_b1'], s['tokens_per_s_b1_std'], '.0f')} | {s['ratio_b1']:.2f} | "
        f"{plus_minus(s['tokens_per_s_b8'], s['tokens_per_s_b8_std'], '.0f')} | {s['ratio_b8']:.2f} | "
        f"{s['prefill_ms']:.2f} | {s['peak_rss_mb']:.0f} | {'★' if s['pareto'] else ''} |\n" for s in summary)
    return "### bits/char against batch-1 decoding speed\n\n" + head + body + "\n" + facts + "\n"


def plot(summary: list[dict], speed_path: Path, size_path: Path) -> None:
    """speed_path: bits/char against batch-1 and batch-8 tokens/s; size_path: against parameters and MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = "os^vD<>ph*P"
    algebras = list(dict.fromkeys(s["algebra"] for s in summary))
    panels = {speed_path: (("tokens_per_s_b1", "batch-1 greedy decoding, tokens/s (KV cache, 1 thread)"),
                           ("tokens_per_s_b8", "batch-8 greedy decoding, tokens/s (KV cache, 1 thread)")),
              size_path: (("params", "parameters"), ("macs_scheme", "multiply-adds per token (scheme)"))}
    for path, cols in panels.items():
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
        for ax, (xk, xl) in zip(axes, cols):
            for i, alg in enumerate(algebras):
                pts = sorted((s for s in summary if s["algebra"] == alg), key=lambda s: s["params"])
                xerr = [0 if not math.isfinite(s.get(f"{xk}_std", float("nan"))) else s[f"{xk}_std"] for s in pts]
                ax.errorbar([s[xk] for s in pts], [s["bits_per_char"] for s in pts],
                            yerr=[0 if not math.isfinite(s["bits_per_char_std"]) else s["bits_per_char_std"]
                                  for s in pts], xerr=xerr,
                            marker=markers[i % len(markers)], capsize=3, label=alg,
                            linestyle="--" if alg == "R" else "-", linewidth=2 if alg == "R" else 1)
            if xk == "tokens_per_s_b1":
                for s in summary:
                    if s["pareto"]:
                        ax.scatter(s[xk], s["bits_per_char"], s=220, facecolors="none", edgecolors="k")
            log_x(ax)
            ax.set_xlabel(xl)
            ax.set_ylabel("validation bits per character (lower is better)")
            ax.grid(alpha=0.3, which="both")
        axes[0].legend(fontsize=8, ncol=3)
        fig.suptitle("Character LMs on the CPython standard library: quality against "
                     + ("decoding speed (circles: Pareto-optimal)" if path == speed_path else "size")
                     + "; mean ± std over seeds")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def write_outputs(rows: list[dict], summary: list[dict], out: Path, facts: str) -> None:
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0]))
        w.writeheader()
        w.writerows(summary)
    (out / "summary.md").write_text(markdown(summary, facts))
    plot(summary, out / "pareto_speed.png", out / "pareto_size.png")
