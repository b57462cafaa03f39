"""GPU timings of the generated kernels, in one run, printed as a short table (and saved as JSON).

    python benchmarks/bench_gpu.py [--json out.json] [--quick]
    python benchmarks/bench_gpu.py --device cpu --quick      # dry run of the script itself (reference paths)

Sections (the GPU goals in brackets):
  gemv    batch-1 (and 16) y = W*x with compact weights, 64 and 256 MiB of weights, against the block-matrix
          cuBLAS path and the copy-bandwidth ceiling   [>= 80 % of copy bandwidth; >= 0.8*d x block for H, M4R]
  gemm    bilinear (premap kernel + r cuBLAS GEMMs + postmap kernel, weight combinations cached) against one
          block-matrix GEMM, H / C / M4R, float32 with TF32 and bfloat16   [bilinear >= 1.6x block for H, large]
  sparse  element-sparse (block-CSR) kernel at 50/80/90/95 % sparsity against the dense gemv kernel and the
          dense block cuBLAS path, batch 1 and 16   [sparse faster than dense from 80 % on]
Before timing, every benchmarked kernel is checked against the torch reference (`check`), so a table is never
printed for wrong results.  Copy bandwidth = 2 * bytes / time of `dst.copy_(src)` (read + write); a gemv's
bandwidth = weight bytes / time.  Times are medians of CUDA-event timings after warm-up.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.kernels import cuda as ac  # noqa: E402
from runtime import load_algebra  # noqa: E402
from runtime.kernels.cuda import reference  # noqa: E402

MiB = 1 << 20
RESULTS: dict = {"env": {}, "check": {}, "gemv": [], "gemm": [], "sparse": [], "errors": []}


# ------------------------------------------------------------------------------------------ timing
def bench(fn, device, iters=20, warmup=3, min_time=0.05) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        ts = []
        for _ in range(max(3, iters // 4)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)
    torch.cuda.synchronize(device)
    # calls per sample so that a sample lasts >= ~1 ms (event resolution)
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize(device)
    one = max(time.perf_counter() - t0, 1e-6)
    reps = max(1, min(100, int(1e-3 / one)))
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3 / reps)
        if sum(ts) * reps > min_time * 20:
            break
    return statistics.median(ts)


def block_matrix(alg, w: torch.Tensor) -> torch.Tensor:
    """The (out*d, in*d) real matrix of left-multiplication blocks (what the block method multiplies by)."""
    out, inn, d = w.shape
    L = alg.left_matrix(w.float()).to(w.dtype)            # (out, in, d[k], d[j])
    return L.permute(0, 2, 1, 3).reshape(out * d, inn * d).contiguous()


def square_for_bytes(nbytes: int, d: int, esize: int) -> int:
    return max(32, int(math.sqrt(nbytes / (d * esize))) // 32 * 32)


def free():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def section(name):
    def deco(fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            try:
                fn(*a, **k)
            except Exception as e:  # keep going: one failing section must not hide the others
                RESULTS["errors"].append(f"{name}: {type(e).__name__}: {e}")
                traceback.print_exc()
            finally:
                free()
                print(f"[{name}: {time.perf_counter() - t0:.1f} s]", flush=True)
        return run
    return deco


# ----------------------------------------------------------------------------------------- checks
@section("check")
def check(device, algebras, dtypes):
    """Kernel vs reference at small odd sizes, for every algebra and dtype benchmarked."""
    g = torch.Generator().manual_seed(0)
    tol = {torch.float32: 3e-6, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}
    for name in algebras:
        alg = load_algebra(name)
        d = alg.dim
        for dt in dtypes:
            w = torch.randn(37, 129, d, generator=g).to(dt).to(device)
            bias = torch.randn(37, d, generator=g).to(dt).to(device)
            worst = 0.0
            for batch in (1, 3, 16):
                x = torch.randn(batch, 129 * d, generator=g).to(dt).to(device)
                want = reference.gemv(alg, w.cpu().double(), x.cpu().double().reshape(batch, 129, d),
                                      bias.cpu().double()).to(dt).double().reshape(batch, -1)
                for got in (ac.gemv(alg, w, x, bias),):
                    err = float((got.cpu().double() - want).abs().max()) / max(1.0, float(want.abs().max()))
                    worst = max(worst, err)
                mask = torch.rand(37, 129, generator=g) > 0.7
                crow = torch.zeros(38, dtype=torch.int64)
                crow[1:] = mask.sum(1).cumsum(0)
                col = mask.nonzero()[:, 1].contiguous()
                vals = w.cpu()[mask].to(device)
                got = ac.bsr_linear(alg, crow.to(device), col.to(device), vals, x, bias)
                want = reference.bsr_linear(alg, crow, col, vals.cpu().double(),
                                            x.cpu().double().reshape(batch, 129, d), bias.cpu().double())
                want = want.to(dt).double().reshape(batch, -1)
                worst = max(worst, float((got.cpu().double() - want).abs().max()) / max(1.0, float(want.abs().max())))
            ok = worst <= tol[dt]
            RESULTS["check"][f"{name}/{str(dt)[6:]}"] = {"max_rel_error": worst, "ok": ok}
            if not ok:
                raise AssertionError(f"{name} {dt}: kernel error {worst:.3g} > {tol[dt]:.1g}")
    print(f"check: kernels agree with the reference ({', '.join(RESULTS['check'])})")


# ------------------------------------------------------------------------------------------- gemv
@section("gemv")
def gemv_section(device, quick):
    sizes = [64 * MiB] if quick else [64 * MiB, 256 * MiB]
    if device.type != "cuda":
        sizes = [MiB // 4]
    cases = [("H", torch.float32), ("M4R", torch.float32), ("C", torch.float32), ("R", torch.float32),
             ("H", torch.bfloat16), ("M4R", torch.bfloat16)]
    for nbytes in sizes:
        src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
        dst = torch.empty_like(src)
        t_copy = bench(lambda: dst.copy_(src), device)
        copy_bw = 2 * nbytes / t_copy
        del src, dst
        for name, dt in cases:
            alg = load_algebra(name)
            d, es = alg.dim, torch.finfo(dt).bits // 8
            n = square_for_bytes(nbytes, d, es)
            w = torch.randn(n, n, d, device=device).to(dt)
            wbytes = w.numel() * es
            for batch in (1, 16):
                x = torch.randn(batch, n * d, device=device).to(dt)
                t_k = bench(lambda: ac.gemv(alg, w, x), device)
                big = block_matrix(alg, w)
                t_b = bench(lambda: x @ big.T, device)
                del big
                free()
                row = {"algebra": name, "dtype": str(dt)[6:], "weight_MiB": wbytes / MiB, "batch": batch,
                       "out": n, "in": n, "t_gemv_us": t_k * 1e6, "t_block_us": t_b * 1e6,
                       "gemv_GBs": wbytes / t_k / 1e9, "copy_GBs": copy_bw / 1e9,
                       "frac_copy_bw": wbytes / t_k / copy_bw, "speedup_vs_block": t_b / t_k,
                       "target_speedup": 0.8 * d if name in ("H", "M4R") and batch == 1 else None}
                RESULTS["gemv"].append(row)
            del w
            free()


# ------------------------------------------------------------------------------------------- gemm
@section("gemm")
def gemm_section(device, quick):
    shapes = [(8192, 4096)] if quick else [(8192, 4096), (16384, 8192)]
    if device.type != "cuda":
        shapes = [(64, 128)]
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True            # "float32" GEMMs run as TF32 on tensor cores
    try:
        for tokens, feats in shapes:
            for name in ("H", "C", "M4R"):
                alg = load_algebra(name)
                d = alg.dim
                for dt in (torch.float32, torch.bfloat16):
                    n = feats // d
                    w = (torch.randn(n, n, d, device=device) / math.sqrt(feats)).to(dt)
                    x = torch.randn(tokens, feats, device=device).to(dt)
                    a = ac.premap(alg, "U", w.float()).to(dt)            # cached weight combinations
                    t_bil = bench(lambda: ac.bilinear_linear(alg, w, x, weight_combinations=a), device, iters=10)
                    xb = ac.premap(alg, "V", x.reshape(tokens, n, d))
                    t_mm = bench(lambda: torch.bmm(xb, a.transpose(1, 2)), device, iters=10)
                    del xb
                    big = block_matrix(alg, w)
                    t_blk = bench(lambda: x @ big.T, device, iters=10)
                    del big, a, w, x
                    free()
                    RESULTS["gemm"].append({
                        "algebra": name, "dtype": "tf32" if dt == torch.float32 else "bf16", "tokens": tokens,
                        "features": feats, "rank": alg.rank, "t_block_ms": t_blk * 1e3, "t_bilinear_ms": t_bil * 1e3,
                        "t_bilinear_gemms_ms": t_mm * 1e3, "speedup": t_blk / t_bil,
                        "target_speedup": 1.6 if name == "H" else None})
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


# ----------------------------------------------------------------------------------------- sparse
@section("sparse")
def sparse_section(device, quick):
    n = 4096 if device.type == "cuda" else 64
    for name in ("H",) if quick else ("H", "M4R"):
        alg = load_algebra(name)
        d = alg.dim
        m = n if name == "H" else n // 2
        w = torch.randn(m, m, d, device=device)
        big = block_matrix(alg, w)
        for batch in (1, 16):
            x = torch.randn(batch, m * d, device=device)
            t_dense = bench(lambda: ac.gemv(alg, w, x), device)
            t_block = bench(lambda: x @ big.T, device)
            for s in (0.5, 0.8, 0.9, 0.95):
                mask = torch.rand(m, m, device=device) >= s
                crow = torch.zeros(m + 1, dtype=torch.int64, device=device)
                crow[1:] = mask.sum(1).cumsum(0)
                col = mask.nonzero()[:, 1].contiguous()
                vals = w[mask].contiguous()
                t_sp = bench(lambda: ac.bsr_linear(alg, crow, col, vals, x), device)
                RESULTS["sparse"].append({
                    "algebra": name, "batch": batch, "sparsity": s, "out": m, "in": m, "nnz": int(col.numel()),
                    "t_sparse_us": t_sp * 1e6, "t_dense_gemv_us": t_dense * 1e6, "t_dense_block_us": t_block * 1e6,
                    "speedup_vs_gemv": t_dense / t_sp, "speedup_vs_block": t_block / t_sp})
                del mask, crow, col, vals
        del w, big
        free()


# ------------------------------------------------------------------------------------------ report
def fmt_table(rows, cols):
    head = " | ".join(h for h, _ in cols)
    lines = [head, " | ".join("-" * len(h) for h, _ in cols)]
    for r in rows:
        lines.append(" | ".join(f(r) for _, f in cols))
    return "\n".join(lines)


def verdict(ok):
    return "-" if ok is None else ("PASS" if ok else "MISS")


def report():
    print()
    env = RESULTS["env"]
    print(f"device: {env.get('device')}  torch {env.get('torch')}  backend {env.get('backend')}  "
          f"CuPy {env.get('cupy')}")
    if RESULTS["gemv"]:
        print("\n## gemv (compact weights, kernel) vs block-matrix cuBLAS and copy bandwidth")
        print(fmt_table(RESULTS["gemv"], [
            ("alg", lambda r: r["algebra"]), ("dtype", lambda r: r["dtype"]),
            ("MiB", lambda r: f"{r['weight_MiB']:.0f}"), ("B", lambda r: str(r["batch"])),
            ("gemv us", lambda r: f"{r['t_gemv_us']:.1f}"), ("block us", lambda r: f"{r['t_block_us']:.1f}"),
            ("GB/s", lambda r: f"{r['gemv_GBs']:.0f}"), ("% copy", lambda r: f"{100 * r['frac_copy_bw']:.0f}"),
            ("x block", lambda r: f"{r['speedup_vs_block']:.2f}"),
            ("bw>=80%", lambda r: verdict(r["frac_copy_bw"] >= 0.8 if r["batch"] == 1 else None)),
            ("x>=0.8d", lambda r: verdict(None if r["target_speedup"] is None
                                          else r["speedup_vs_block"] >= r["target_speedup"]))]))
    if RESULTS["gemm"]:
        print("\n## large GEMMs: bilinear (maps + r GEMMs) vs one block GEMM")
        print(fmt_table(RESULTS["gemm"], [
            ("alg", lambda r: r["algebra"]), ("dtype", lambda r: r["dtype"]),
            ("tokens x feats", lambda r: f"{r['tokens']}x{r['features']}"), ("r", lambda r: str(r["rank"])),
            ("block ms", lambda r: f"{r['t_block_ms']:.2f}"), ("bilinear ms", lambda r: f"{r['t_bilinear_ms']:.2f}"),
            ("(GEMMs ms)", lambda r: f"{r['t_bilinear_gemms_ms']:.2f}"), ("speedup", lambda r: f"{r['speedup']:.2f}"),
            (">=1.6x", lambda r: verdict(None if r["target_speedup"] is None else r["speedup"] >= 1.6))]))
    if RESULTS["sparse"]:
        print("\n## element-sparse (block-CSR kernel) vs dense gemv kernel and dense block cuBLAS")
        print(fmt_table(RESULTS["sparse"], [
            ("alg", lambda r: r["algebra"]), ("B", lambda r: str(r["batch"])),
            ("sparsity", lambda r: f"{100 * r['sparsity']:.0f}%"), ("sparse us", lambda r: f"{r['t_sparse_us']:.1f}"),
            ("dense gemv us", lambda r: f"{r['t_dense_gemv_us']:.1f}"),
            ("dense block us", lambda r: f"{r['t_dense_block_us']:.1f}"),
            ("x gemv", lambda r: f"{r['speedup_vs_gemv']:.2f}"), ("x block", lambda r: f"{r['speedup_vs_block']:.2f}"),
            ("faster", lambda r: verdict(r["speedup_vs_gemv"] > 1 if r["sparsity"] >= 0.8 else None))]))
    if RESULTS["errors"]:
        print("\nERRORS:")
        for e in RESULTS["errors"]:
            print("  " + e)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, help="write all numbers here")
    p.add_argument("--quick", action="store_true", help="fewer sizes")
    p.add_argument("--device", default="cuda")
    p.add_argument("--only", nargs="*", choices=["check", "gemv", "gemm", "sparse"])
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to time (use --device cpu for a dry run)")
        return 2
    env = RESULTS["env"]
    env["torch"] = torch.__version__
    env["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    env["backend"] = ac.backend_name() if device.type == "cuda" else "reference (cpu)"
    try:
        import cupy
        env["cupy"] = cupy.__version__
    except Exception:
        env["cupy"] = None
    if device.type == "cuda" and not ac.kernels_available():
        print(f"no kernel backend ({ac.backend_error()}): install the `cuda` extra or set ALGEBRANETS_CUDA_BACKEND=nvrtc")
        return 2
    wanted = args.only or ["check", "gemv", "gemm", "sparse"]
    t0 = time.perf_counter()
    if device.type == "cuda":
        n = ac.warmup(["H", "M4R", "C", "R"], device=device.index or 0)
        print(f"[compiled {n} kernel groups: {time.perf_counter() - t0:.1f} s]", flush=True)
    if "check" in wanted:
        check(device, ["H", "M4R", "C", "R"], [torch.float32, torch.bfloat16])
    if RESULTS["errors"]:
        report()
        return 1
    if "gemv" in wanted:
        gemv_section(device, args.quick)
    if "gemm" in wanted:
        gemm_section(device, args.quick)
    if "sparse" in wanted:
        sparse_section(device, args.quick)
    RESULTS["env"]["seconds"] = time.perf_counter() - t0
    report()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(RESULTS, indent=1))
    return 1 if RESULTS["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
