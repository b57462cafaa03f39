"""Quality against batch-1 decoding speed: is an algebra language model faster at the same quality (or better at
the same speed) than the real one?

    python -m examples.pareto                                  # 9 algebras x 3 sizes (+ seed 1 at medium): ~56 min
    python -m examples.pareto --phase train --jobs 2           # phase 1 only (resumable)
    python -m examples.pareto --phase measure                  # phase 2 only: decoding speed, one model at a time
    python -m examples.pareto --algebras R,C,H --sizes small,512 --tokens 1000000 --seeds 0 --out my_pareto
    make pareto

Every algebra trains a family of decoder-only byte-level language models (`runtime.models.TransformerLM`,
vocab 256) on the CPython standard library's own source text (`examples.training.stdlib_text`: Lib/**/*.py
without test folders, split into train / validation by a hash of each file's path; 8 MB train, 64 KiB
validation by default).  Sizes (R's shape; d_ff = 4 d_model):

    small   d_model 128, 5 layers, 4 heads   ~1.1 M parameters
    medium  d_model 256, 4 layers, 4 heads   ~3.3 M
    large   d_model 352, 5 layers, 4 heads   ~7.7 M (31 MB of float32 weights: more than L2, decoding streams them)
    N       (an integer) d_model N, 4 layers, 4 heads

Each algebra's width (elements; d_ff 4 x width) is the one whose whole model's parameter count is closest to
R's at that size (`examples.compare.matched`); every run at every size sees the same --tokens training tokens
(AdamW with a one-cycle schedule peaking at 1e-3, `examples.compare.train_lm`, batches of 8 x 64 bytes).
Seeds 0 and 1 (--seeds) run at the middle size, seed 0 elsewhere.

Phase 1 (train) runs --jobs trainings at once (one torch thread each); each writes OUT/checkpoints/<key>.pt
(state_dict + config; not meant for git) and OUT/runs/<key>.json (validation bits per character, parameters,
multiply-adds per token counted on one 64-byte window: naive and with the bilinear scheme, or
for a learned algebra, which has none, its block count).  Phase 2 (measure)
then times one model at a time in this process, one torch thread, nothing else of the script running: greedy
`generate` with the KV cache (16-byte prompt from the validation text, 48 new tokens; tokens/s = new tokens x
batch / time of the whole call, prefill included) at batch 1 and 8 under torch.inference_mode(), and the
prefill (the prompt through the model into a fresh cache) alone, each interleaved with R's model of the same
size and seed (medians of 5 rounds; ratios to R); and the peak memory: the peak RSS growth of a fresh process
(forkserver) (Linux: VmHWM reset through /proc/self/clear_refs; elsewhere ru_maxrss, a lower bound) from after
reading the checkpoint and a warm-up generation with a one-layer model of the algebra (libraries loaded) to
after building the model and generating at batch 1 and 8 (weights, any cached weight forms, KV cache and
activations).  It writes OUT/speed/<key>.json.  Both phases are resumable (a run with a file is skipped;
files are written to a temporary name and renamed) and every file records the Python version, the SHA-256 of
the corpus text and the budget: a folder made with another corpus or budget is refused.  Finally OUT gets
runs.csv, summary.csv, summary.md (mean ± std over seeds, Pareto-optimal rows marked ★) and pareto_speed.png /
pareto_size.png (bits per character against batch-1 and batch-8 tokens/s, parameters and multiply-adds; one
line per algebra through its sizes, R dashed).

Time (default run: 36 trainings of 262,144 tokens = 512 steps of 8 x 64, --jobs 2): 56 min on this project's
2-core x86 VM (Intel Xeon, AVX-512; 53.5 min of training, 2.8 min of measurement; docs/pareto/).  Measured on one
thread (8 x 64 batches): R trains at ~12.8k / 4.5k / 1.9k tokens/s at small / medium / large; per token C is
~1.6x slower, H and M2R ~2.2x, M4R ~4x, M2C ~5x; the two jobs slow each other by ~10 %.  This budget is short
(trimmed to fit one sitting): R reaches 3.32 / 3.07 / 3.07 bits per byte at small / medium / large, so the
large models are undertrained (peak lr 1e-3; at 3e-3 the larger models trained worse); --tokens 1048576
(about 4 h) gives a clearer frontier.

Several GPUs (larger sizes): each rank of torchrun takes every WORLD_SIZE-th pending run of phase 1, on
cuda:LOCAL_RANK (no communication: the runs are independent); then measure on one CPU process:

    torchrun --nproc_per_node 8 -m examples.pareto --phase train --sizes 512,768,1024 --tokens 50000000
    python -m examples.pareto --phase measure --sizes 512,768,1024 --tokens 50000000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from . import compare, pareto_report
from .training.cli import UserError, int_list, names, positive_int
from .training.cli import run as run_cli
from .training.results import save_json
from .training.stdlib_text import VOCAB, stdlib_corpus
from .training.timing import cpu_name, interleaved_medians

ALGEBRAS = ("R", "C", "H", "M2R", "M4R", "M2C", "PHM4", "RandH", "RandM4R")
PHASES = ("train", "measure", "all")


@dataclass(frozen=True)
class Size:
    name: str
    d_model: int          # R's d_model (real channels); d_ff = 4 d_model
    n_layers: int
    n_heads: int


SIZES = {"small": Size("small", 128, 5, 4), "medium": Size("medium", 256, 4, 4), "large": Size("large", 352, 5, 4)}


@dataclass(frozen=True)
class Budget:
    """Everything a result depends on besides (algebra, size, seed): runs with another budget never mix."""
    tokens: int = 262_144            # training tokens per run (every algebra, every size): 512 steps of 8 x 64
    seq_len: int = 64                # also the models' max_len: prompt_len + new_tokens must fit
    batch: int = 8
    lr: float = 1e-3                 # the one-cycle schedule's peak
    train_bytes: int = 8_000_000
    val_bytes: int = 65_536
    prompt_len: int = 16
    new_tokens: int = 48
    rounds: int = 5
    python: str = ""
    corpus_sha256: str = ""

    @property
    def steps(self) -> int:
        return max(1, self.tokens // (self.batch * self.seq_len))


TINY = dict(tokens=2048, seq_len=16, batch=4, train_bytes=20_000, val_bytes=2_000, prompt_len=4, new_tokens=4,
            rounds=1)
QUICK = dict(tokens=65_536, train_bytes=1_000_000, val_bytes=16_384, new_tokens=16, rounds=3)


@dataclass(frozen=True)
class Run:
    algebra: str
    size: Size
    seed: int

    @property
    def key(self) -> str:
        return f"{self.algebra}-{self.size.name}-s{self.seed}"

    def baseline(self) -> "Run":
        return Run("R", self.size, self.seed)


def plan(algebras: list[str], sizes: list[Size], seeds: tuple[int, ...]) -> list[Run]:
    """Seed 0 (the first seed) at every size, every seed at the middle size."""
    middle = sizes[len(sizes) // 2]
    return [Run(a, s, seed) for s in sizes for a in algebras for seed in (seeds if s == middle else seeds[:1])]


# ------------------------------------------------------------------------------------------- model

def build(algebra: str, size: Size, width: int, max_len: int) -> torch.nn.Module:
    from runtime.models import TransformerLM

    return TransformerLM(VOCAB, d_model=width, n_layers=size.n_layers, n_heads=size.n_heads, d_ff=4 * width,
                         max_len=max_len, algebra=algebra)


def matched_model(algebra: str, size: Size, seed: int, max_len: int) -> tuple[int, torch.nn.Module]:
    """The width matching R's parameter count at `size`, and the model at that width initialised from `seed`."""
    from runtime import counting

    target = counting.count_params(build("R", size, size.d_model, max_len))
    width = size.d_model
    if algebra != "R":
        width, _ = compare.matched(lambda w: build(algebra, size, w, max_len), algebra, size.d_model, target,
                                   multiple_of=size.n_heads)
    torch.manual_seed(seed)                   # the initialisation depends on (seed, width) only
    return width, build(algebra, size, width, max_len)


def check_algebras(algebras: list[str]) -> dict[str, int]:
    """Each name's algebra dimension; refuses (one line) a name that is not an available algebra."""
    from runtime.layers import AlgebraLinear

    dims = {}
    for name in algebras:
        try:
            dims[name] = AlgebraLinear(1, 1, algebra=name).algebra.dim
        except Exception as e:  # noqa: BLE001 - any failure means the name is not usable here
            raise UserError(f"algebra {name!r} is not available ({type(e).__name__}: {e})") from None
    if "R" not in algebras:
        raise UserError("--algebras must include R: every speed is measured against R's model")
    return dims


# ----------------------------------------------------------------------------------------- files

def load_rows(folder: Path, budget: Budget) -> dict[str, dict]:
    """The finished rows in `folder` by key; refuses (one line) files made with another corpus or budget."""
    rows = {}
    for path in sorted(folder.glob("*.json")):
        row = json.loads(path.read_text())
        if row.get("budget") != asdict(budget):
            saved = row.get("budget") or {}
            diff = ", ".join(f"{k} {saved.get(k)!r} (now {v!r})" for k, v in asdict(budget).items()
                             if saved.get(k) != v)
            raise UserError(f"{path} was made with another corpus or budget ({diff}): use another --out, or the "
                            f"same options and Python")
        rows[path.stem] = row
    return rows


# ---------------------------------------------------------------------------------------- phase 1

_CORPUS: dict = {}


def _corpus(budget: Budget):
    key = (budget.train_bytes, budget.val_bytes)
    if key not in _CORPUS:
        _CORPUS[key] = stdlib_corpus(*key)
    return _CORPUS[key]


def scheme_method(model) -> str:
    """The counted method of the "scheme" multiply-adds: the bilinear scheme (rank r per element pair); a learned
    algebra has none, so its block count (d^2 per pair, what its layers run)."""
    from runtime.learned_algebra import is_learned

    return "block" if is_learned(model.algebra) else "bilinear"


def train_one(run: Run, budget: Budget, out: Path, device: str = "cpu") -> dict:
    """Train one model; save OUT/checkpoints/<key>.pt and OUT/runs/<key>.json; returns the row."""
    from runtime import counting

    torch.set_num_threads(1)
    corpus = _corpus(budget)
    width, model = matched_model(run.algebra, run.size, run.seed, budget.seq_len)
    window = corpus.train[: budget.seq_len].unsqueeze(0)
    rep = counting.count(model, window)
    model.to(device)
    lm_budget = compare.Budget(digits_epochs=0, lm_steps=budget.steps, lm_batch=budget.batch, seq_len=budget.seq_len)
    start = time.perf_counter()
    bits = compare.train_lm(model, corpus.train.to(device), corpus.val.to(device), lm_budget, run.seed, run.key,
                            lr=budget.lr)
    seconds = time.perf_counter() - start
    config = dict(algebra=run.algebra, width=width, n_layers=run.size.n_layers, n_heads=run.size.n_heads,
                  max_len=budget.seq_len, size=asdict(run.size))
    ckpt = out / "checkpoints" / f"{run.key}.pt"
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "config": config},
               ckpt.with_name(ckpt.name + ".tmp"))
    ckpt.with_name(ckpt.name + ".tmp").replace(ckpt)
    row = dict(key=run.key, algebra=run.algebra, size=run.size.name, seed=run.seed, dim=model.algebra.dim,
               d_model_real=run.size.d_model, n_layers=run.size.n_layers, n_heads=run.size.n_heads, width=width,
               params=rep.params, macs_naive=rep.total_macs("naive") // budget.seq_len,
               macs_scheme=rep.total_macs(scheme_method(model)) // budget.seq_len, bits_per_char=bits,
               train_seconds=seconds,
               steps=budget.steps, device=device, python=budget.python, corpus_sha256=budget.corpus_sha256,
               size_spec=asdict(run.size), budget=asdict(budget))
    save_json(out / "runs" / f"{run.key}.json", row)
    return row


def _say(bar, line: str) -> None:
    """Print a line above a tqdm progress bar (or plainly when there is none)."""
    if hasattr(bar, "write"):
        bar.write(line)
    else:
        print(line, flush=True)


def _worker_init() -> None:
    torch.set_num_threads(1)


def train_phase(todo: list[Run], budget: Budget, out: Path, jobs: int) -> None:
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world > 1:                                # torchrun: every world-th pending run, on this rank's GPU
        todo = todo[rank::world]
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        for run in compare.progress(todo, len(todo), f"rank {rank} training"):
            train_one(run, budget, out, device)
        return
    if jobs <= 1:
        done = (train_one(run, budget, out) for run in todo)
        ex = None
    else:
        saved = os.environ.get("TQDM_DISABLE")
        os.environ["TQDM_DISABLE"] = "1"         # the workers (started by submit) inherit it: no per-run bars
        try:
            ex = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init)
            futures = [ex.submit(train_one, run, budget, out) for run in todo]
        finally:
            if saved is None:
                del os.environ["TQDM_DISABLE"]
            else:
                os.environ["TQDM_DISABLE"] = saved
        done = (f.result() for f in as_completed(futures))
    try:
        bar = compare.progress(done, len(todo), "training")
        for row in bar:
            _say(bar, f"  {row['key']}: {row['bits_per_char']:.3f} bits/char ({row['train_seconds']:.0f}s)")
    finally:
        if ex is not None:
            ex.shutdown(cancel_futures=True)


# ---------------------------------------------------------------------------------------- phase 2

def load_model(path: Path) -> torch.nn.Module:
    """The trained model saved at `path` (eval mode, CPU)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    c = ckpt["config"]
    model = build(c["algebra"], Size(**c["size"]), c["width"], c["max_len"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def _prompts(budget: Budget, batch: int) -> torch.Tensor:
    val = _corpus(budget).val
    step = max(1, (len(val) - budget.prompt_len) // batch)
    return torch.stack([val[i * step: i * step + budget.prompt_len] for i in range(batch)])


def _rss_kib(field: str) -> int | None:
    """VmRSS / VmHWM of this process in KiB (Linux /proc), None where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory(path: str, budget: Budget) -> tuple[float, str]:
    """(MB, method): peak resident memory growth in this (fresh) process from after reading the checkpoint (and a
    warm-up generation with a one-layer model of the same algebra, which loads the libraries) to after building
    the model from it and generating at batch 1 and 8.  Method "VmHWM": the peak RSS, reset to the current RSS
    before (Linux /proc/self/clear_refs), minus that RSS; "ru_maxrss": the high-water mark's growth (a lower
    bound where an earlier peak was higher)."""
    torch.set_num_threads(1)
    prompts = {b: _prompts(budget, b) for b in (1, 8)}
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    c = ckpt["config"]
    size = Size(**c["size"])
    warm = build(c["algebra"], Size(size.name, size.n_heads, 1, size.n_heads), size.n_heads, c["max_len"]).eval()
    with torch.inference_mode():         # libraries and kernels loaded and their first-use memory taken first
        for p in prompts.values():
            warm.generate(p, budget.new_tokens)
    del warm
    rss = _rss_kib("VmRSS")
    exact = rss is not None and _reset_peak()
    before = rss if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = build(c["algebra"], size, c["width"], c["max_len"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    with torch.inference_mode():
        for p in prompts.values():
            model.generate(p, budget.new_tokens)
    after = _rss_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) / 1024, ("VmHWM" if exact else "ru_maxrss")     # KiB on Linux


def _fresh_processes():
    """A multiprocessing context whose children hold none of this process's models: forkserver (children fork
    from a server that has only imported torch and the runtime) where available, else spawn.  Not this module:
    a child of `python -m examples.pareto` imports it afresh as its main module, which must not be loaded yet."""
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "runtime.models"])
        return ctx
    return get_context("spawn")


def measure_one(run: Run, budget: Budget, out: Path) -> dict:
    """Decoding speed of one trained model, interleaved with R's of the same size and seed."""
    torch.set_num_threads(1)
    model = load_model(out / "checkpoints" / f"{run.key}.pt")
    real = model if run.algebra == "R" else load_model(out / "checkpoints" / f"{run.baseline().key}.pt")
    n = budget.new_tokens
    row = dict(key=run.key, budget=asdict(budget))
    with torch.inference_mode():
        fns, pfns = {}, {}
        for b in (1, 8):
            p = _prompts(budget, b)
            fns[f"a{b}"] = lambda p=p: model.generate(p, n)
            if real is not model:
                fns[f"r{b}"] = lambda p=p: real.generate(p, n)
        p1 = _prompts(budget, 1)
        pfns["a"] = lambda: model(p1, model.new_cache(budget.prompt_len))
        if real is not model:
            pfns["r"] = lambda: real(p1, real.new_cache(budget.prompt_len))
        t = interleaved_medians(fns, budget.rounds, target_s=0.0)
        tp = interleaved_medians(pfns, budget.rounds)
    for b in (1, 8):
        row[f"tokens_per_s_b{b}"] = b * n / t[f"a{b}"]
        row[f"ratio_b{b}"] = t.get(f"r{b}", t[f"a{b}"]) / t[f"a{b}"]
    row["prefill_ms"] = tp["a"] * 1e3
    row["prefill_ratio"] = tp["a"] / tp.get("r", tp["a"])
    with ProcessPoolExecutor(1, mp_context=_fresh_processes(), max_tasks_per_child=1) as ex:
        row["peak_rss_mb"], row["rss_method"] = ex.submit(peak_memory, str(out / "checkpoints" / f"{run.key}.pt"),
                                                          budget).result()
    save_json(out / "speed" / f"{run.key}.json", row)
    return row


def measure_phase(todo: list[Run], budget: Budget, out: Path) -> None:
    bar = compare.progress(todo, len(todo), "measuring")
    for run in bar:
        row = measure_one(run, budget, out)
        _say(bar, f"  {run.key}: batch 1 {row['tokens_per_s_b1']:.0f} tok/s ({row['ratio_b1']:.2f} x R), batch 8 "
              f"{row['tokens_per_s_b8']:.0f} tok/s ({row['ratio_b8']:.2f} x R), {row['peak_rss_mb']:.0f} MB")


# ------------------------------------------------------------------------------------------- main

def parse_sizes(text: str, tiny: bool) -> list[Size]:
    """Size names (small, medium, large) or R widths (integers >= 4), comma-separated."""
    sizes = []
    for item in names(text):
        if item in SIZES:
            s = SIZES[item]
        elif item.isdigit() and int(item) >= 4:
            s = Size(item, int(item), 4, 4)
        else:
            raise UserError(f"unknown size {item!r}: use {', '.join(SIZES)} or an R width (an integer >= 4)")
        sizes.append(Size(s.name, s.d_model, 1, 2) if tiny else s)
    return sizes


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m examples.pareto", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/pareto"))
    p.add_argument("--algebras", type=names, default=list(ALGEBRAS))
    p.add_argument("--sizes", default="small,medium,large", help="size names or R widths (comma-separated)")
    p.add_argument("--tokens", type=positive_int, default=None, help=f"training tokens per run "
                                                                      f"(default {Budget.tokens:,})")
    p.add_argument("--seeds", type=int_list, default=(0, 1), help="the first at every size, all at the middle size")
    p.add_argument("--jobs", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="trainings at once (one thread each)")
    p.add_argument("--phase", choices=PHASES, default="all")
    p.add_argument("--quick", action="store_true", help="a short budget (~15 min): 64k tokens a run, 1 MB of text")
    p.add_argument("--tiny", action="store_true", help="tests: 1-layer models, a 20 kB corpus, a few steps")
    args = p.parse_args(argv)
    start = time.perf_counter()
    over = dict(TINY if args.tiny else QUICK if args.quick else {})
    if args.tokens is not None:
        over["tokens"] = args.tokens
    sizes = parse_sizes(args.sizes, args.tiny)
    if len({s.name for s in sizes}) != len(sizes):
        raise UserError(f"--sizes names a size twice: {args.sizes}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and args.phase != "train":
        raise UserError("under torchrun only --phase train runs (measure afterwards in one CPU process)")
    check_algebras(args.algebras)
    base = Budget(**over)
    corpus = _corpus(base)
    budget = Budget(**over, python=corpus.python, corpus_sha256=corpus.sha256)
    for sub in ("runs", "speed", "checkpoints"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    runs = plan(args.algebras, sizes, args.seeds)
    trained = load_rows(args.out / "runs", budget)
    for r in runs:
        if r.key in trained and trained[r.key]["size_spec"] != asdict(r.size):
            raise UserError(f"{args.out / 'runs' / (r.key + '.json')} holds size {r.size.name!r} as "
                            f"{trained[r.key]['size_spec']}, not {asdict(r.size)}: use another --out")
    measured = load_rows(args.out / "speed", budget)
    if args.phase in ("train", "all"):
        todo = [r for r in runs if r.key not in trained or not (args.out / "checkpoints" / f"{r.key}.pt").exists()]
        print(f"phase 1: {len(runs) - len(todo)} trained, {len(todo)} to train ({args.jobs} at once) -> {args.out}",
              flush=True)
        todo.sort(key=lambda r: (-r.size.d_model, r.algebra == "R", r.algebra, r.seed))    # the longest first
        if todo:
            train_phase(todo, budget, args.out, args.jobs)
        if world > 1:
            return []
        trained = load_rows(args.out / "runs", budget)
    if args.phase == "train":
        return []
    missing = [r.key for r in runs if r.key not in trained]
    if missing:
        raise UserError(f"{len(missing)} runs are not trained yet ({', '.join(missing[:4])}...): run --phase train")
    todo = [r for r in runs if r.key not in measured]
    print(f"phase 2: {len(runs) - len(todo)} measured, {len(todo)} to measure (one at a time, 1 thread)", flush=True)
    measure_phase(todo, budget, args.out)
    measured = load_rows(args.out / "speed", budget)
    rows = [{**trained[r.key], **measured[r.key]} for r in runs]
    summary = pareto_report.summarise(rows, args.algebras, [s.name for s in sizes])
    facts = (f"Validation bits per character (byte) of byte-level TransformerLMs trained on {budget.tokens:,} tokens "
             f"each ({budget.steps} steps of {budget.batch} x {budget.seq_len}) from the CPython {budget.python} "
             f"standard library's source (corpus SHA-256 {budget.corpus_sha256[:16]}…; {budget.train_bytes:,} "
             f"training, {budget.val_bytes:,} validation bytes); sizes "
             + ", ".join(f"{s.name} = R d_model {s.d_model}, {s.n_layers} layers, {s.n_heads} heads" for s in sizes)
             + f"; other algebras' widths matched to R's parameters.  Speed: greedy generate with the KV cache, "
             f"{budget.prompt_len}-byte prompt + {budget.new_tokens} new tokens (prefill included), one torch "
             f"thread, torch.inference_mode(), medians of {budget.rounds} rounds interleaved with R's model of the "
             f"same size and seed (/ R: ratio to it); prefill: the prompt into a fresh cache at batch 1.  Peak RSS: "
             f"peak resident memory growth ({rows[0]['rss_method']}) in a fresh process from after reading the "
             f"checkpoint to after building the model and generating at batch 1 and 8.  ★: Pareto-optimal (no other "
             f"row has lower bits/char and higher batch-1 tokens/s).  Mean ± sample std over seeds where a size has "
             f"several.  Machine: {cpu_name()} ({platform.machine()}, {os.cpu_count()} cores, possibly shared), "
             f"torch {torch.__version__}.")
    pareto_report.write_outputs(rows, summary, args.out, facts)
    print(pareto_report.markdown(summary, facts))
    print(f"{time.perf_counter() - start:.0f}s; results in {args.out.resolve()} (runs.csv, summary.csv, summary.md, "
          f"pareto_speed.png, pareto_size.png)")
    return summary


def cli() -> int:
    """`python -m examples.pareto` with one-line errors."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
