"""CPU inference benchmark of the generated kernels: float32, no autograd, medians of interleaved rounds.

    .venv/bin/python benchmarks/bench_inference.py                  # all tables, 1 and 2 threads (~10 min)
    .venv/bin/python benchmarks/bench_inference.py --quick          # H, C, M4R; N = 2048 only (~2 min)
    .venv/bin/python benchmarks/bench_inference.py --crossover      # kernel vs torch paths per batch
    .venv/bin/python benchmarks/bench_inference.py --generate       # TransformerLM.generate tokens/s vs R
    .venv/bin/python benchmarks/bench_inference.py --sparse         # element-sparse layers vs dense
    .venv/bin/python benchmarks/bench_inference.py --threads 1 --algebras H,C --sizes 512 --json out.json
    .venv/bin/python benchmarks/bench_inference.py --isa native,x86-64-v3 --clock cpu --threads 1 --sizes 512,2048
                                                    # dense + sparse per target ISA (ALGEBRANETS_CPU_MARCH)
                                                    # (--isa-generate: and generation per target)
    .venv/bin/python benchmarks/bench_inference.py --modes --threads 1   # inference_mode vs no_grad
    .venv/bin/python benchmarks/bench_inference.py --learned --algebras PHM2,PHM4,PHM8 --threads 1 --clock cpu
                                                    # learned algebras: kernel vs torch transform vs real, batch 1-8

Tables
  dense    one layer at batch 1 against a real torch.nn.Linear(N, N) with the same parameter count (the
           algebra layer has round(N / sqrt(d)) elements per side), both with bias: the layer with
           method="auto" (which runs the kernel at batch 1), the kernel alone (method="kernel") and the best
           torch path (the cheapest of block / fold / bilinear, i.e. auto before this issue); ratios to the
           real layer, and the weight bandwidth reached (GB/s of weight bytes read per call) next to the real
           GEMV's.
  sparse   element-sparse inference layers (runtime.sparsity.to_block_sparse of a layer pruned to 90 % or 50 %
           element sparsity) against the dense layer (method="auto") at batch 1 and 32, N = 2048: H, M4R, C.
  conv     a small convolution (batch 1, 3x3, 4x4 image, 64 real channels) through the kernel against the torch
           paths: does the kernel pay for convolutions?
  generate greedy `TransformerLM.generate` (KV cache) of a 4-layer, vocab-256 model of ~13 M parameters
           (the real model: d_model 512, d_ff 2048, 8 heads; each algebra's width matched to its whole
           parameter count, examples.lm.build_model(scope="model")), prompt 16 tokens, 64 new tokens, at
           batch 1 and 8: tokens/s (new tokens x batch / time of the whole generate call, prefill included)
           relative to the real model, whose time is the fastest of its three ways to run (method="auto",
           which runs the CPU kernel at small batches, method="block", F.linear on the weight itself, and the
           same model with torch.nn.Linear layers: no per-call overhead of this library); "packed": the
           algebra model with its projections packed (runtime.packing.convert_to_packed).
  crossover (--crossover) the kernel against the best torch path for batches 1..32 at N = 512 and 2048; the
           largest batch at which the kernel wins is what runtime/kernels/choice.py records.
  modes    (--modes) each layer built, loaded and run inside torch.inference_mode() against the same under
           torch.no_grad(), methods block / fold / bilinear / auto at batch 1 and 64, N = 1024: the ratio should
           be 1 (weights made under inference_mode are inference tensors; no cached form may be rebuilt per call).
  learned  (--learned) layers over learned algebras (runtime.learned) at batch 1, 2, 4, 8: the layer (its CPU kernel
           where rows x d <= 16 columns) and its transform path in torch ops, each against the real nn.Linear(N, N)
           of equal parameters at the same batch; the crossover sets runtime.kernels.choice.LEARNED_MAX_COLUMNS.
  isa      (--isa LIST) the dense and sparse tables once per kernel build target, from the same machine and run:
           each target's kernels built with ALGEBRANETS_CPU_MARCH (native: the machine's own, e.g. AVX-512;
           x86-64-v3: AVX2 + FMA) and timed in a process of their own, which times its own real nn.Linear;
           rounds alternate between the targets (one process per target and round block).
Every variant of one table row runs interleaved (one sample of each per round, each sample long enough to
time: several calls) so load changes on a shared machine hit them alike; the tables give medians over
rounds.  Goals: dense <= 1.05; 90 % sparse <= 0.2 (batch 1) and <= 0.5 (batch 32); 50 % sparse
<= 0.7 (batch 1); generation >= 0.95 (batch 1), >= 0.9 (batch 8).  On a shared machine, --clock cpu (one thread) times only this process's work.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench_layers import ALGEBRAS, ensure_built  # noqa: E402

from examples.training.timing import CLOCK, cpu_name, interleaved_medians  # noqa: E402

SPARSE_ALGEBRAS = ["H", "M4R", "C"]


def elements(N: int, d: int) -> int:
    return max(1, round(N / math.sqrt(d)))


def torch_paths(A, batch: int, n: int) -> str:
    """The torch path `auto` picks without the kernel (the cheapest of block / fold / bilinear)."""
    from runtime.functional import choose_method
    return choose_method(A, rows=batch, in_elems=n, out_elems=n, weight_grad=False)


def dense_rows(algebras, sizes, rounds):
    from runtime import packing
    from runtime.layers import AlgebraLinear
    from runtime.learned_algebra import describe, is_learned
    rows = []
    for N in sizes:
        real = torch.nn.Linear(N, N)
        xr = torch.randn(1, N)
        for name in algebras:
            A = describe(name)              # a learned algebra ("PHM4"): kernel = transform + skinny, torch = block
            n = elements(N, A.dim)
            layer = AlgebraLinear(n, n, name)
            kern = AlgebraLinear(n, n, name, method="kernel")
            best = "block" if is_learned(A) else torch_paths(A, 1, n)
            torch_layer = AlgebraLinear(n, n, name, method=best)
            for m in (kern, torch_layer):
                m.load_state_dict(layer.state_dict())
            x = torch.randn(1, n * A.dim)
            fns = {"real": lambda: real(xr), "auto": lambda: layer(x), "kernel": lambda: kern(x),
                   "torch": lambda: torch_layer(x)}
            if not is_learned(A):                       # the packed inference form (runtime.packing)
                packed = packing.to_packed(layer)
                fns["packed"] = lambda: packed(x)
            with torch.no_grad():
                t = interleaved_medians(fns, rounds)
            t.setdefault("packed", float("nan"))             # (learned algebras have no packed form)
            wbytes = n * n * A.dim * 4
            rows.append({"N": N, "algebra": name, "d": A.dim, "elements": n, "torch_path": best,
                         "real_us": t["real"] * 1e6, "auto_us": t["auto"] * 1e6, "kernel_us": t["kernel"] * 1e6,
                         "torch_us": t["torch"] * 1e6, "auto_ratio": t["auto"] / t["real"],
                         "kernel_ratio": t["kernel"] / t["real"], "torch_ratio": t["torch"] / t["real"],
                         "kernel_GBs": wbytes / t["kernel"] / 1e9, "real_GBs": N * N * 4 / t["real"] / 1e9,
                         "packed_us": t["packed"] * 1e6, "packed_ratio": t["packed"] / t["real"],
                         "packed_GBs": wbytes / t["packed"] / 1e9})
            print(f"  N={N:5d} {name:6s} real {t['real'] * 1e6:8.1f} us  auto {rows[-1]['auto_ratio']:5.2f}  "
                  f"kernel {rows[-1]['kernel_ratio']:5.2f}  packed {rows[-1]['packed_ratio']:5.2f}  "
                  f"torch ({best}) {rows[-1]['torch_ratio']:5.2f}  "
                  f"GB/s kernel {rows[-1]['kernel_GBs']:5.1f} packed {rows[-1]['packed_GBs']:5.1f} "
                  f"real {rows[-1]['real_GBs']:5.1f}", flush=True)
    return rows


def sparse_rows(algebras, rounds, N=2048):
    from runtime import load_algebra
    from runtime import sparsity as sp
    from runtime.layers import AlgebraLinear
    rows = []
    for name in algebras:
        A = load_algebra(name)
        n = elements(N, A.dim)
        for sparsity, batches in ((0.9, (1, 32)), (0.5, (1,))):
            torch.manual_seed(0)
            dense = AlgebraLinear(n, n, name)
            pruned = AlgebraLinear(n, n, name)
            pruned.load_state_dict(dense.state_dict())
            sp.prune_elements_(pruned, sparsity)
            fast = sp.to_block_sparse(pruned)
            for batch in batches:
                x = torch.randn(batch, n * A.dim)
                with torch.no_grad():
                    t = interleaved_medians({"dense": lambda: dense(x), "sparse": lambda: fast(x)}, rounds)
                form = "sparse" if isinstance(fast, sp.BlockSparseAlgebraLinear) else "dense (kept)"
                rows.append({"algebra": name, "N": N, "sparsity": sparsity, "batch": batch, "form": form,
                             "dense_us": t["dense"] * 1e6, "sparse_us": t["sparse"] * 1e6,
                             "ratio": t["sparse"] / t["dense"]})
                print(f"  {name:4s} {int(sparsity * 100)}% batch {batch:3d}: dense {t['dense'] * 1e6:8.1f} us  "
                      f"{form} {t['sparse'] * 1e6:8.1f} us  ratio {rows[-1]['ratio']:5.2f}", flush=True)
    return rows


def conv_rows(algebras, rounds):
    from runtime import load_algebra
    from runtime.layers import AlgebraConv2d
    rows = []
    for name in algebras:
        A = load_algebra(name)
        c = max(1, 64 // A.dim)
        x = torch.randn(1, c * A.dim, 4, 4)
        layers = {m: AlgebraConv2d(c, c, 3, name, padding=1, method=m) for m in ("kernel", "block", "fold",
                                                                                 "bilinear")}
        for m in layers.values():
            m.load_state_dict(layers["kernel"].state_dict())
        with torch.no_grad():
            t = interleaved_medians({m: (lambda m=m: layers[m](x)) for m in layers}, rounds)
        best = min(("block", "fold", "bilinear"), key=lambda m: t[m])
        rows.append({"algebra": name, "channels": c, "kernel_us": t["kernel"] * 1e6, "best_torch": best,
                     "torch_us": t[best] * 1e6, "ratio": t["kernel"] / t[best]})
        print(f"  {name:6s} conv 3x3 {c}->{c} elements, 4x4, batch 1: kernel {t['kernel'] * 1e6:7.1f} us, "
              f"{best} {t[best] * 1e6:7.1f} us, ratio {rows[-1]['ratio']:5.2f}", flush=True)
    return rows


GEN_REAL = {"d_model": 512, "d_ff": 2048, "n_layers": 4, "n_heads": 8, "vocab": 256}


def lm_for(algebra: str, method: str | None = None):
    """The benchmark's TransformerLM over `algebra` (eval mode), its whole parameter count matched to the real
    model of GEN_REAL (examples.lm.build_model, scope "model")."""
    from examples.lm import build_model
    g = GEN_REAL
    torch.manual_seed(0)
    return build_model(algebra, g["vocab"], g["d_model"], g["n_layers"], g["n_heads"], g["d_ff"], seq_len=96,
                       match="params", method=method, scope="model").eval()


def with_torch_linears(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a real (algebra "R") model with each AlgebraLinear replaced by the torch.nn.Linear of the same
    weights: the model a user would otherwise write, with none of this library's per-call overhead."""
    import copy
    from runtime.layers import AlgebraLinear
    out = copy.deepcopy(model)
    for name, m in list(out.named_modules()):
        if isinstance(m, AlgebraLinear):
            lin = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(m.weight[..., 0])
                if m.bias is not None:
                    lin.bias.copy_(m.bias[..., 0])
            parent = out.get_submodule(name.rpartition(".")[0]) if "." in name else out
            setattr(parent, name.rpartition(".")[2], lin)
    return out.eval()


def generation_rows(algebras, rounds, batches=(1, 8), prompt_len=16, new_tokens=64):
    import copy
    from runtime import counting, packing
    reals = {"auto": lm_for("R"), "block": lm_for("R", "block")}
    reals["block"].load_state_dict(reals["auto"].state_dict())
    reals["torch"] = with_torch_linears(reals["auto"])
    rows = []
    for name in algebras:
        model = reals["auto"] if name == "R" else lm_for(name)
        packed = packing.convert_to_packed(copy.deepcopy(model))     # its projections packed (runtime.packing)
        params = counting.count_params(model)
        for batch in batches:
            prompt = torch.randint(0, GEN_REAL["vocab"], (batch, prompt_len),
                                   generator=torch.Generator().manual_seed(batch))
            fns = {f"real_{m}": (lambda r=r: r.generate(prompt, new_tokens)) for m, r in reals.items()}
            fns["algebra"] = lambda: model.generate(prompt, new_tokens)
            fns["packed"] = lambda: packed.generate(prompt, new_tokens)
            t = interleaved_medians(fns, rounds, target_s=0.0)
            real = min(t["real_auto"], t["real_block"], t["real_torch"])
            toks = batch * new_tokens
            rows.append({"algebra": name, "batch": batch, "d_model": model.d_model, "params": params,
                         "tokens_per_s": toks / t["algebra"], "real_tokens_per_s": toks / real,
                         "real_auto_tokens_per_s": toks / t["real_auto"],
                         "real_block_tokens_per_s": toks / t["real_block"],
                         "real_torch_tokens_per_s": toks / t["real_torch"], "ratio": real / t["algebra"],
                         "packed_tokens_per_s": toks / t["packed"], "packed_ratio": real / t["packed"]})
            print(f"  {name:6s} d_model {model.d_model:4d} ({params / 1e6:.2f} M) batch {batch}: "
                  f"{toks / t['algebra']:7.1f} tok/s, real {toks / real:7.1f} (auto {toks / t['real_auto']:.1f}, "
                  f"block {toks / t['real_block']:.1f}, nn.Linear {toks / t['real_torch']:.1f}), "
                  f"ratio {rows[-1]['ratio']:5.2f}, packed {rows[-1]['packed_ratio']:5.2f}", flush=True)
    return rows


def learned_rows(algebras, rounds, sizes, batches=(1, 2, 4, 8)):
    """Learned algebras (runtime.learned): the layer at inference (method="auto": the learned kernel where
    rows x d <= runtime.kernels.choice.LEARNED_MAX_COLUMNS) against its transform path in torch ops and the real
    nn.Linear(N, N) of equal parameters at the same batch."""
    from runtime.layers import AlgebraLinear
    from runtime.learned_algebra import describe
    from runtime.methods import learned_fn
    rows = []
    for N in sizes:
        real = torch.nn.Linear(N, N)
        for name in algebras:
            d = describe(name).dim
            n = elements(N, d)
            layer = AlgebraLinear(n, n, name).eval()
            for batch in batches:
                x, xr = torch.randn(batch, n * d), torch.randn(batch, N)
                with torch.no_grad():
                    t = interleaved_medians({
                        "real": lambda: real(xr), "auto": lambda: layer(x),
                        "torch": lambda: learned_fn.linear(x, layer.weight, layer.bias, layer.algebra, "transform",
                                                           use_kernel=False)}, rounds)
                rows.append({"N": N, "algebra": name, "batch": batch, "columns": batch * d,
                             "real_us": t["real"] * 1e6, "auto_ratio": t["auto"] / t["real"],
                             "torch_ratio": t["torch"] / t["real"]})
                print(f"  N={N:5d} {name:6s} batch {batch:2d} ({batch * d:3d} columns): real {t['real'] * 1e6:8.1f} us"
                      f"  auto {rows[-1]['auto_ratio']:5.2f}  torch transform {rows[-1]['torch_ratio']:5.2f}", flush=True)
    return rows


def mode_rows(algebras, rounds, N=1024, batches=(1, 64), methods=("block", "fold", "bilinear", "auto")):
    """The same layer built, loaded and run inside torch.inference_mode() against one built and run under
    torch.no_grad(): time ratio per algebra, method and batch (1.0 = no inference_mode cliff)."""
    from runtime import load_algebra
    from runtime.layers import AlgebraLinear
    rows = []
    for name in algebras:
        A = load_algebra(name)
        n = elements(N, A.dim)
        state = AlgebraLinear(n, n, name).state_dict()
        for method in methods:
            with torch.no_grad():
                plain = AlgebraLinear(n, n, name, method=method).eval()
                plain.load_state_dict(state)
            with torch.inference_mode():
                inf = AlgebraLinear(n, n, name, method=method).eval()
                inf.load_state_dict(state)
            for batch in batches:
                x = torch.randn(batch, n * A.dim)

                def under_no_grad():
                    with torch.no_grad():
                        plain(x)

                def under_inference_mode():
                    with torch.inference_mode():
                        inf(x)
                t = interleaved_medians({"no_grad": under_no_grad, "inference_mode": under_inference_mode}, rounds)
                rows.append({"algebra": name, "method": method, "batch": batch, "no_grad_us": t["no_grad"] * 1e6,
                             "inference_mode_us": t["inference_mode"] * 1e6,
                             "ratio": t["inference_mode"] / t["no_grad"]})
                print(f"  {name:6s} {method:8s} batch {batch:3d}: no_grad {t['no_grad'] * 1e6:8.1f} us, "
                      f"inference_mode {t['inference_mode'] * 1e6:8.1f} us, ratio {rows[-1]['ratio']:.2f}",
                      flush=True)
    return rows


def crossover_rows(algebras, rounds, sizes=(512, 2048), batches=(1, 2, 4, 8, 12, 16, 24, 32)):
    from runtime import load_algebra
    from runtime.layers import AlgebraLinear
    rows = []
    for N in sizes:
        for name in algebras:
            A = load_algebra(name)
            n = elements(N, A.dim)
            kern = AlgebraLinear(n, n, name, method="kernel")
            wins = []
            for batch in batches:
                best = torch_paths(A, batch, n)
                other = AlgebraLinear(n, n, name, method=best)
                other.load_state_dict(kern.state_dict())
                x = torch.randn(batch, n * A.dim)
                with torch.no_grad():
                    t = interleaved_medians({"kernel": lambda: kern(x), "torch": lambda: other(x)}, rounds)
                wins.append((batch, t["kernel"] / t["torch"], best))
            last, tied = 0, False                 # the kernel won at every measured batch up to here
            for b, r, _ in wins:                  # (one batch within the noise, <= 1.10, does not end the run)
                if r < 1.0:
                    last = b
                elif r <= 1.10 and not tied:
                    tied = True
                else:
                    break
            rows.append({"N": N, "algebra": name, "ratios": wins, "kernel_wins_up_to": last})
            print(f"  N={N:5d} {name:6s} kernel / torch: "
                  + " ".join(f"b{b}:{r:.2f}" for b, r, _ in wins) + f"  -> kernel up to batch {last}", flush=True)
    return rows


def _target_env(isa: str) -> dict:
    """This process's environment with the kernels built for `isa` ("native": the machine's own)."""
    import os
    env = dict(os.environ)
    env.pop("ALGEBRANETS_CPU_MARCH", None)
    if isa != "native":
        env["ALGEBRANETS_CPU_MARCH"] = isa
    return env


def isa_rows(isas: list[str], args) -> dict:
    """The dense and sparse tables per kernel target: this script re-run with --dense-sparse in one process per
    target (ALGEBRANETS_CPU_MARCH), the targets alternating over `blocks` passes whose medians are merged."""
    import subprocess
    import tempfile
    out: dict[str, dict] = {}
    blocks = 2
    for block in range(blocks):
        for isa in isas:
            env = _target_env(isa)
            with tempfile.TemporaryDirectory() as tmp:
                js = Path(tmp) / "r.json"
                cmd = [sys.executable, __file__, "--dense-sparse", "--threads", "1", "--clock", args.clock,
                       "--rounds", str(max(3, args.rounds // blocks)), "--algebras", args.algebras,
                       "--sizes", args.sizes, "--json", str(js)]
                print(f"== target {isa} (pass {block + 1}/{blocks})", flush=True)
                subprocess.run(cmd, env=env, check=True)
                res = json.loads(js.read_text())["results"]["1"]
            have = out.setdefault(isa, {"dense": [], "sparse": []})
            for kind in ("dense", "sparse"):
                if not have[kind]:
                    have[kind] = [dict(r, _runs=[r]) for r in res[kind]]
                else:
                    for h, r in zip(have[kind], res[kind]):
                        h["_runs"].append(r)
    if getattr(args, "isa_generate", False):             # generation once per target (whole models: long)
        for isa in isas:
            env = _target_env(isa)
            with tempfile.TemporaryDirectory() as tmp:
                js = Path(tmp) / "r.json"
                cmd = [sys.executable, __file__, "--generate", "--threads", "1", "--clock", args.clock,
                       "--rounds", str(args.rounds), "--algebras", args.algebras, "--json", str(js)]
                print(f"== target {isa}: generation", flush=True)
                subprocess.run(cmd, env=env, check=True)
                out[isa]["generate"] = [dict(r, _runs=[r]) for r in json.loads(js.read_text())["results"]["1"]["generate"]]
    for isa, tables in out.items():                    # per row: the median over passes of each ratio / rate
        for rows in tables.values():
            for h in rows:
                runs = h.pop("_runs")
                for key in h:
                    if isinstance(h[key], float):
                        h[key] = statistics.median(r[key] for r in runs)
    return out


def isa_markdown(res: dict, machine_line: str) -> str:
    """The per-target tables of docs/benchmarks.md."""
    isas = list(res)
    out = [f"Machine: {machine_line}; one thread; targets: {', '.join(isas)}.", ""]
    dense = {isa: res[isa]["dense"] for isa in isas}
    out += table("#### batch 1, dense: layer (method=\"auto\") time / real `nn.Linear(N, N)` of equal parameters, "
                 "and weight bandwidth (GB/s) against the real GEMV's",
                 ["N", "algebra", *(f"{i} auto" for i in isas), *(f"{i} packed" for i in isas),
                  *(f"{i} kernel GB/s (real)" for i in isas), *(f"{i} packed GB/s" for i in isas)],
                 [f"| {rows[0]['N']} | {rows[0]['algebra']} | "
                  + " | ".join(f"{r['auto_ratio']:.2f}" for r in rows) + " | "
                  + " | ".join(f"{r['packed_ratio']:.2f}" for r in rows) + " | "
                  + " | ".join(f"{r['kernel_GBs']:.1f} ({r['real_GBs']:.1f}) = {r['kernel_GBs'] / r['real_GBs']:.2f}x"
                               for r in rows) + " | "
                  + " | ".join(f"{r['packed_GBs']:.1f} = {r['packed_GBs'] / r['real_GBs']:.2f}x" for r in rows) + " |"
                  for rows in zip(*dense.values())])
    sparse = {isa: res[isa]["sparse"] for isa in isas}
    out += table("#### element-sparse layer (to_block_sparse) / dense layer, N = 2048",
                 ["algebra", "sparsity", "batch", *(f"{i}" for i in isas), "form"],
                 [f"| {rows[0]['algebra']} | {int(rows[0]['sparsity'] * 100)} % | {rows[0]['batch']} | "
                  + " | ".join(f"{r['ratio']:.2f}" for r in rows) + f" | {rows[0]['form']} |"
                  for rows in zip(*sparse.values())])
    if all("generate" in res[isa] for isa in isas):
        gen = {isa: res[isa]["generate"] for isa in isas}
        out += table("#### generation: TransformerLM.generate tokens/s / the real model's (same target), ~13 M "
                     "parameters (plain model; packed: runtime.packing.convert_to_packed)",
                     ["algebra", "batch", *(f"{i}" for i in isas), *(f"{i} packed" for i in isas)],
                     [f"| {rows[0]['algebra']} | {rows[0]['batch']} | "
                      + " | ".join(f"{r['ratio']:.2f} ({r['tokens_per_s']:.0f} / {r['real_tokens_per_s']:.0f})"
                                   for r in rows) + " | "
                      + " | ".join(f"{r['packed_ratio']:.2f} ({r['packed_tokens_per_s']:.0f})" for r in rows) + " |"
                      for rows in zip(*gen.values())])
    return "\n".join(out)


def table(title: str, header: list[str], lines: list[str]) -> list[str]:
    """A markdown table: its title, the header row and rule, then the given row lines."""
    return [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *lines, ""]


def markdown(results: dict) -> str:
    """The tables of docs/benchmarks.md from the results of main() (keyed by thread count)."""
    out = []
    for threads, res in results.items():
        if "dense" in res:
            out += table(f"#### {threads} thread(s): batch 1, layer time / real `nn.Linear(N, N)`",
                         ["N", "algebra", "real us", "auto", "kernel", "torch path before (which)", "kernel GB/s",
                          "real GB/s"],
                         [f"| {r['N']} | {r['algebra']} | {r['real_us']:.1f} | {r['auto_ratio']:.2f} | "
                          f"{r['kernel_ratio']:.2f} | {r['torch_ratio']:.2f} ({r['torch_path']}) | "
                          f"{r['kernel_GBs']:.1f} | {r['real_GBs']:.1f} |" for r in res["dense"]])
        if "sparse" in res:
            out += table(f"#### {threads} thread(s): element-sparse layer / dense layer (N = 2048)",
                         ["algebra", "sparsity", "batch", "dense us", "sparse us", "ratio"],
                         [f"| {r['algebra']} | {int(r['sparsity'] * 100)} % | {r['batch']} | {r['dense_us']:.0f} | "
                          f"{r['sparse_us']:.0f} | {r['ratio']:.2f} ({r['form']}) |" for r in res["sparse"]])
        if "conv" in res:
            out += table(f"#### {threads} thread(s): small convolution, kernel / best torch path",
                         ["algebra", "elements", "kernel us", "torch us (path)", "ratio"],
                         [f"| {r['algebra']} | {r['channels']} | {r['kernel_us']:.0f} | {r['torch_us']:.0f} "
                          f"({r['best_torch']}) | {r['ratio']:.2f} |" for r in res["conv"]])
        if "generate" in res:
            out += table(f"#### {threads} thread(s): greedy generation (KV cache), tokens/s / the real model's",
                         ["algebra", "d_model", "params", "batch", "tokens/s", "real tokens/s (auto, block)", "ratio"],
                         [f"| {r['algebra']} | {r['d_model']} | {r['params'] / 1e6:.2f} M | {r['batch']} | "
                          f"{r['tokens_per_s']:.0f} | {r['real_tokens_per_s']:.0f} ({r['real_auto_tokens_per_s']:.0f}, "
                          f"{r['real_block_tokens_per_s']:.0f}) | {r['ratio']:.2f} |" for r in res["generate"]])
        if "modes" in res:
            out += table(f"#### {threads} thread(s): layer built, loaded and run under inference_mode / under no_grad",
                         ["algebra", "method", "batch", "no_grad us", "inference_mode us", "ratio"],
                         [f"| {r['algebra']} | {r['method']} | {r['batch']} | {r['no_grad_us']:.0f} | "
                          f"{r['inference_mode_us']:.0f} | {r['ratio']:.2f} |" for r in res["modes"]])
        if "crossover" in res:
            out += table(f"#### {threads} thread(s): kernel / torch path per batch",
                         ["N", "algebra", *(f"b{b}" for b, _, _ in res["crossover"][0]["ratios"]), "kernel wins up to"],
                         [f"| {r['N']} | {r['algebra']} | " + " | ".join(f"{x:.2f}" for _, x, _ in r["ratios"])
                          + f" | {r['kernel_wins_up_to']} |" for r in res["crossover"]])
    return "\n".join(out)


def machine() -> str:
    return f"{cpu_name()}, {torch.get_num_threads()} threads, python {platform.python_version()}, torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--algebras", default=",".join(ALGEBRAS))
    ap.add_argument("--sizes", default="512,2048,4096")
    ap.add_argument("--quick", action="store_true", help="H, C, M4R at N = 2048 only")
    ap.add_argument("--crossover", action="store_true", help="only the kernel / torch crossover per batch")
    ap.add_argument("--generate", action="store_true", help="only the generation table")
    ap.add_argument("--sparse", action="store_true", help="only the element-sparse table")
    ap.add_argument("--dense-sparse", action="store_true", help="only the dense and element-sparse tables")
    ap.add_argument("--isa", help="comma-separated kernel targets (native, x86-64-v3, ...): dense and sparse "
                                  "tables per target, one process each (with --markdown: the per-target tables)")
    ap.add_argument("--isa-generate", action="store_true", help="with --isa: the generation table per target too")
    ap.add_argument("--learned", action="store_true",
                    help="only the learned-algebra table (--algebras PHM2,PHM4,...; per target: ALGEBRANETS_CPU_MARCH)")
    ap.add_argument("--modes", action="store_true",
                    help="only the inference_mode / no_grad table (layers built, loaded and run in each mode)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time (default), or this thread's CPU time: steadier on a loaded machine, 1 thread only")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--markdown", help="also write the tables (as in docs/benchmarks.md) here")
    args = ap.parse_args()
    if args.clock == "cpu":
        if args.threads != "1":
            ap.error("--clock cpu measures one thread: use --threads 1")
        CLOCK["fn"] = time.thread_time
    ensure_built()
    if args.isa:
        res = isa_rows(args.isa.split(","), args)
        line = f"{machine()}, kernel targets {args.isa}, clock {args.clock}"
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": line, "isa": res}, indent=1))
        text = isa_markdown(res, line)
        print(text)
        if args.markdown:
            Path(args.markdown).write_text(text)
        return
    algebras = args.algebras.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        algebras, sizes = ["H", "C", "M4R"], [2048]
    results = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        print(f"== {machine()}", flush=True)
        out = results[threads] = {}
        if args.crossover:
            out["crossover"] = crossover_rows(algebras, args.rounds)
            continue
        if args.learned:
            print("learned algebras at inference (ratio to the real layer of equal parameters, same batch):")
            out["learned"] = learned_rows(algebras, args.rounds, sizes)
            continue
        if args.modes:
            print("inference_mode / no_grad (layer built, loaded and run in each mode):")
            out["modes"] = mode_rows(algebras, args.rounds)
            continue
        if args.dense_sparse:
            print("dense, batch 1 (ratio to the real layer of equal parameters):")
            out["dense"] = dense_rows(algebras, sizes, args.rounds)
            out["sparse"] = sparse_rows([a for a in SPARSE_ALGEBRAS if a in algebras], args.rounds)
            continue
        if args.sparse:
            print("element-sparse (ratio to the dense layer):")
            out["sparse"] = sparse_rows([a for a in SPARSE_ALGEBRAS if a in algebras], args.rounds)
            continue
        if not args.generate:
            print("dense, batch 1 (ratio to the real layer of equal parameters):")
            out["dense"] = dense_rows(algebras, sizes, args.rounds)
            print("element-sparse (ratio to the dense layer):")
            out["sparse"] = sparse_rows([a for a in SPARSE_ALGEBRAS if a in algebras], args.rounds)
            print("small convolution:")
            out["conv"] = conv_rows([a for a in ("C", "H", "M2R", "M4R") if a in algebras], args.rounds)
        print("generation (tokens/s relative to the real model):")
        out["generate"] = generation_rows(algebras, args.rounds)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown(results))


if __name__ == "__main__":
    main()
