"""Interleaved timing: every variant sampled once per round, medians over rounds (load changes on a shared
machine hit all variants alike).  Used by benchmarks/bench_inference.py and examples.pareto.

    t = interleaved_medians({"algebra": lambda: model.generate(p, 48), "real": lambda: real.generate(p, 48)},
                            rounds=5, target_s=0.0)          # median seconds per call of each
"""
from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Callable

__all__ = ["CLOCK", "timed", "interleaved_medians", "cpu_name"]

#: the clock samples are read with (benchmarks may swap in time.thread_time: this process's CPU time only)
CLOCK: dict[str, Callable[[], float]] = {"fn": time.perf_counter}


def timed(fn: Callable[[], object], target_s: float = 0.004) -> tuple[Callable[[], None], int]:
    """fn wrapped to run enough calls per sample to take about target_s (0: one call); returns (sample, calls).
    Calls fn once first (warm-up)."""
    fn()
    if target_s <= 0:
        return fn, 1
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-7)       # (wall time: only to size the samples)
    reps = max(1, min(1000, int(target_s / one)))

    def sample():
        for _ in range(reps):
            fn()
    return sample, reps


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int, target_s: float = 0.004) -> dict[str, float]:
    """Median seconds per call of each variant, sampled in interleaved rounds (samples of about target_s)."""
    samples = {k: timed(f, target_s) for k, f in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, (sample, reps) in samples.items():
            t = CLOCK["fn"]()
            sample()
            times[k].append((CLOCK["fn"]() - t) / reps)
    return {k: statistics.median(v) for k, v in times.items()}


def cpu_name() -> str:
    """The CPU's model name and widest vector ISA (Linux: /proc/cpuinfo), else what the platform module knows:
    for result tables, e.g. "Intel(R) Xeon(R) Processor, AVX-512"."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(("model name",
                                                                                                   "Model"))),
                platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines()
                      if line.startswith(("flags", "Features"))), []))
    isa = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "NEON" if {"asimd", "neon"} & flags
           else None)
    return f"{name}, {isa}" if isa else name
