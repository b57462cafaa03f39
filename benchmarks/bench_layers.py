"""CPU benchmark of the algebra layers: forward + backward, float32, medians of interleaved rounds.

    .venv/bin/python benchmarks/bench_layers.py                 # everything (about 10-20 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_layers.py --quick         # the four targeted cases only
    .venv/bin/python benchmarks/bench_layers.py --threads 1 --rounds 9 --algebras H,C

Cases
  linear   batch 2048, 512 -> 512 elements, every algebra: block / fold / bilinear / auto, and the bare real
           GEMMs of each method alone (same shapes, operands made beforehand).
  complex  C layer (auto, bilinear) against torch.nn.Linear in complex64 on the same data.
  sweep    (--complex-sweep) the complex method at several sizes: C linear / Conv2d / ConvTranspose2d against
           torch's complex64 nn.Linear / nn.Conv2d / nn.ConvTranspose2d (same weights), and M2C linear and conv,
           every method and auto.
  conv     Conv2d 3x3, padding 1, 32x32 images, batch 32: M2R with 64 -> 64 elements (the target); with
           --conv-all every algebra at 256 real channels (256 // d elements).
Each timed call is y = layer(x); y.backward(g) with a gradient g made beforehand and grads reset to None.
Methods are run interleaved (one call of each per round) so that load changes on a shared machine hit
all of them alike; the table gives medians over rounds.  Peak memory: the largest total of live CPU
allocations during one call from a cold start (torch.profiler, scratch pool emptied first), in MiB.

Targets: H bilinear >= 1.7x block; C >= 1.2x torch complex64; M4R auto >= 3.5x block;
M2R conv2d >= 1.8x block; each layer within 15% of its bare GEMMs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

ALGEBRAS = ["R", "C", "H", "Dual", "Cross3", "M2R", "M3R", "M4R", "M2C", "O"]


def ensure_built() -> None:
    """Point the runtime at a current build (a fresh one in a temporary folder if needed)."""
    from runtime.registry import AlgebraNotBuiltError, load_algebra
    try:
        for name in ALGEBRAS:
            load_algebra(name)
        return
    except AlgebraNotBuiltError:
        pass
    from codegen.build import build
    from runtime.registry import ENV_VAR, clear_cache
    out = Path(tempfile.mkdtemp(prefix="algebranets_bench_")) / "generated"
    build(out_dir=out)
    os.environ[ENV_VAR] = str(out)
    clear_cache()


def interleaved(fns: dict, rounds: int, warmup: int = 1, clock=time.perf_counter) -> dict[str, list[float]]:
    """Seconds per call of each function, one call of each per round (`clock`: wall time by default;
    `time.process_time` counts this process's CPU time, steadier on a loaded machine)."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = clock()
            f()
            times[k].append(clock() - t)
    return times


def med(ts: list[float]) -> float:
    return statistics.median(ts)


def peak_mib(fn) -> float:
    """Peak of live CPU allocations during fn() from a cold scratch pool, in MiB."""
    from runtime.methods import workspace as _workspace
    from torch.profiler import ProfilerActivity, profile
    _workspace.empty_workspace()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []
    for e in prof.events():         # self memory: an op's own allocations (minus frees), children excluded
        if getattr(e, "self_cpu_memory_usage", 0):
            events.append((e.time_range.start, e.self_cpu_memory_usage))
    cur = best = 0
    for _, b in sorted(events):
        cur += b
        best = max(best, cur)
    return best / 2 ** 20


def train_step(fn, x, g, params):
    def step():
        x.grad = None
        for p in params:
            p.grad = None
        y = fn(x)
        y.backward(g)
    return step


# ------------------------------------------------------------------------------------------- linear
def bare_linear(A, method, N, I, O):
    """The real GEMMs of one fwd+bwd of `method`, operands made beforehand."""
    from runtime.functional import fold_info
    d, r = A.dim, A.rank
    if method == "bilinear":
        from runtime.methods.bilinear_fn import _row_split
        k = _row_split(r, N)        # the same row blocking the layer uses to keep all threads busy
        xc, wc, gc = torch.randn(r * k, N // k, I), torch.randn(r * k, O, I), torch.randn(r * k, N // k, O)
        wT = wc.transpose(1, 2).contiguous().transpose(1, 2)       # the layer's layout for the dx GEMMs
        return lambda: (torch.bmm(xc, wc.transpose(1, 2)), torch.bmm(gc, wT), torch.bmm(gc.transpose(1, 2), xc))
    plan = fold_info(A)
    m, p = (plan.m, plan.p) if method == "fold" else (1, d)
    x, B, g = torch.randn(N * m, I * p), torch.randn(O * p, I * p), torch.randn(N * m, O * p)
    return lambda: (x @ B.t(), g @ B, g.t() @ x)


def linear_case(name, N, I, O, rounds, with_peak=True):
    from runtime.functional import choose_method, fold_info
    from runtime.layers import AlgebraLinear
    from runtime.registry import load_algebra
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(0)
    x = torch.randn(N, I * d, requires_grad=True)
    g = torch.randn(N, O * d)
    layer = AlgebraLinear(I, O, A)
    methods = ["block", "bilinear"] + (["fold"] if fold_info(A).m > 1 else [])
    auto = choose_method(A, rows=N, in_elems=I, out_elems=O, weight_grad=True)
    fns = {}
    for m in methods + ["auto"]:
        layer_m = AlgebraLinear(I, O, A, method=m)
        layer_m.load_state_dict(layer.state_dict())
        fns[m] = train_step(layer_m, x, g, list(layer_m.parameters()))
    for m in methods:
        fns["gemm:" + m] = bare_linear(A, m, N, I, O)
    times = interleaved(fns, rounds)
    res = {"algebra": name, "d": d, "rank": A.rank, "fold_m": fold_info(A).m, "auto": auto,
           "median_ms": {k: 1e3 * med(v) for k, v in times.items()}}
    if with_peak:
        res["peak_mib"] = {m: peak_mib(fns[m]) for m in methods + ["auto"]}
    return res


def complex_case(N, I, O, rounds):
    from runtime.layers import AlgebraLinear
    torch.manual_seed(0)
    xr = torch.randn(N, I * 2)
    gr = torch.randn(N, O * 2)
    layer = AlgebraLinear(I, O, "C")
    ours = {m: AlgebraLinear(I, O, "C", method=m) for m in ("auto", "bilinear", "block")}
    for l in ours.values():
        l.load_state_dict(layer.state_dict())
    ref = torch.nn.Linear(I, O, dtype=torch.complex64)
    with torch.no_grad():
        ref.weight.copy_(torch.view_as_complex(layer.weight.detach().contiguous()))
        ref.bias.copy_(torch.view_as_complex(layer.bias.detach().contiguous()))
    xc = torch.view_as_complex(xr.detach().clone().view(N, I, 2)).requires_grad_()
    gc = torch.view_as_complex(gr.view(N, O, 2))
    xo = xr.detach().clone().requires_grad_()
    fns = {f"C {m}": train_step(l, xo, gr, list(l.parameters())) for m, l in ours.items()}
    fns["torch complex64"] = train_step(ref, xc, gc, list(ref.parameters()))
    # same numbers?
    with torch.no_grad():
        err = (torch.view_as_real(ref(xc)).reshape(N, O * 2) - ours["auto"](xo)).abs().max().item()
    times = interleaved(fns, rounds)
    return {"median_ms": {k: 1e3 * med(v) for k, v in times.items()}, "max_abs_diff": err,
            "peak_mib": {k: peak_mib(f) for k, f in fns.items()}}


# ------------------------------------------------------------------------------------ complex sweep
LINEAR_SIZES = [(64, 64), (256, 128), (1024, 256), (1024, 512), (2048, 512)]     # (batch, elements in = out)
CONV_SIZES = [(32, 16, 16), (32, 16, 32), (32, 32, 64), (32, 32, 128)]           # (batch, image side, elements)


def _torch_complex(kind: str, layer, size):
    """torch's complex64 module with the algebra layer's weights (C only)."""
    w = torch.view_as_complex(layer.weight.detach().contiguous())
    b = torch.view_as_complex(layer.bias.detach().contiguous())
    if kind == "linear":
        ref = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.complex64)
    elif kind == "conv":
        ref = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], padding=1, dtype=torch.complex64)
    else:
        ref = torch.nn.ConvTranspose2d(w.shape[0], w.shape[1], w.shape[2:], stride=2, padding=1, output_padding=1,
                                       dtype=torch.complex64)
    with torch.no_grad():
        ref.weight.copy_(w)
        ref.bias.copy_(b)
    return ref


def sweep_case(name: str, kind: str, size: tuple, rounds: int) -> dict:
    """One size of the complex sweep: every method, auto and (C) torch's complex64 module, fwd + bwd."""
    from runtime.functional import choose_method, method_costs
    from runtime.layers import AlgebraConv2d, AlgebraConvTranspose2d, AlgebraLinear
    from runtime.registry import load_algebra
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(0)
    if kind == "linear":
        N, E = size
        make = lambda m: AlgebraLinear(E, E, A, method=m)                              # noqa: E731
        xs, gs = (N, E * d), (N, E * d)
        shape = dict(rows=N, in_elems=E, out_elems=E)
    elif kind == "conv":
        N, S, E = size
        make = lambda m: AlgebraConv2d(E, E, 3, A, padding=1, method=m)                 # noqa: E731
        xs, gs = (N, E * d, S, S), (N, E * d, S, S)
        shape = dict(rows=N * S * S, in_elems=E, out_elems=E, kernel=9, in_positions=N * S * S)
    else:
        N, S, E = size
        make = lambda m: AlgebraConvTranspose2d(E, E, 3, A, stride=2, padding=1, output_padding=1,  # noqa: E731
                                                method=m)
        xs, gs = (N, E * d, S, S), (N, E * d, 2 * S, 2 * S)
        shape = dict(rows=N * S * S, in_elems=E, out_elems=E, kernel=9, out_positions=N * 4 * S * S)
    x = torch.randn(xs, requires_grad=True)
    g = torch.randn(gs)
    base = make("block")
    fns = {}
    methods = ["block", "bilinear", "complex"] + (["fold"] if A.fold.m > 1 else []) + ["auto"]
    for m in methods:
        layer = make(m)
        layer.load_state_dict(base.state_dict())
        fns[m] = train_step(layer, x, g, list(layer.parameters()))
    err = None
    if name == "C":
        ref = _torch_complex(kind, base, size)
        xc = torch.view_as_complex(x.detach().reshape(N, -1, 2, *xs[2:]).movedim(2, -1).contiguous()).requires_grad_()
        gc = torch.view_as_complex(g.reshape(N, -1, 2, *gs[2:]).movedim(2, -1).contiguous())
        fns["torch complex64"] = train_step(ref, xc, gc, list(ref.parameters()))
        with torch.no_grad():                       # same numbers as torch's module?
            yr = torch.view_as_real(ref(xc))
            yr = (yr if kind == "linear" else yr.movedim(-1, 2)).reshape(gs)
            err = (yr - base(x)).abs().max().item()
    times = interleaved(fns, rounds, clock=time.process_time)      # CPU time: steadier on the shared machine
    auto = choose_method(A, **shape, weight_grad=True)
    costs = method_costs(A, **shape, weight_grad=True)
    before = min((k for k in costs if k != "complex"), key=costs.get)      # auto's pick without the complex method
    return {"algebra": name, "kind": kind, "size": size, "auto": auto, "auto_before": before, "max_abs_diff": err,
            "median_ms": {k: 1e3 * med(v) for k, v in times.items()}}


def report_sweep(rows) -> str:
    out = ["| algebra | layer | size | block | fold | bilinear | complex | auto (picks) | auto before (picked) | "
           "torch complex64 | auto vs complex64 | auto vs auto before |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["median_ms"]
        c64 = t.get("torch complex64")
        before = t[r["auto_before"]]
        cells = [r["algebra"], r["kind"], str(r["size"]), f"{t['block']:.2f}",
                 f"{t['fold']:.2f}" if "fold" in t else "-", f"{t['bilinear']:.2f}", f"{t['complex']:.2f}",
                 f"{t['auto']:.2f} ({r['auto']})", f"{before:.2f} ({r['auto_before']})",
                 "-" if c64 is None else f"{c64:.2f}", "-" if c64 is None else f"{ratio(c64, t['auto']):.2f}x",
                 f"{ratio(before, t['auto']):.2f}x"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def complex_sweep(rounds: int) -> list[dict]:
    rows = []
    cases = ([("C", "linear", s) for s in LINEAR_SIZES] + [("C", "conv", s) for s in CONV_SIZES]
             + [("C", "convT", s) for s in CONV_SIZES[:3]]
             + [("M2C", "linear", s) for s in LINEAR_SIZES[:4]]
             + [("M2C", "conv", (32, 16, 8)), ("M2C", "conv", (32, 16, 16))])
    for name, kind, size in cases:
        r = sweep_case(name, kind, size, rounds)
        rows.append(r)
        print(name, kind, size, json.dumps({k: round(v, 2) for k, v in r["median_ms"].items()}), "auto:", r["auto"],
              flush=True)
    return rows


# --------------------------------------------------------------------------------------------- conv
def bare_conv(A, method, N, C_in, C_out, HW, k):
    from runtime.functional import fold_info
    d, r = A.dim, A.rank
    if method == "bilinear":
        xs, ws_, groups, n = (N, r * C_in, HW, HW), (r * C_out, C_in, k, k), r, N
    else:
        plan = fold_info(A)
        m, p = (plan.m, plan.p) if method == "fold" else (1, d)
        xs, ws_, groups, n = (N * m, C_in * p, HW, HW), (C_out * p, C_in * p, k, k), 1, N * m
    x, w = torch.randn(xs), torch.randn(ws_)
    g = torch.randn(n, ws_[0], HW, HW)
    if method != "block":       # fold and bilinear lay their internal activations out channels-last
        x, g = x.contiguous(memory_format=torch.channels_last), g.contiguous(memory_format=torch.channels_last)

    def f():
        y = torch.ops.aten.convolution(x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], groups)
        torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], groups,
                                            [True, True, False])
        return y
    return f


def conv_case(name, N, C_in, C_out, HW, rounds, k=3, with_peak=True):
    from runtime.functional import choose_method, fold_info
    from runtime.layers import AlgebraConv2d
    from runtime.registry import load_algebra
    A = load_algebra(name)
    d = A.dim
    torch.manual_seed(0)
    x = torch.randn(N, C_in * d, HW, HW, requires_grad=True)
    g = torch.randn(N, C_out * d, HW, HW)
    base = AlgebraConv2d(C_in, C_out, k, A, padding=1)
    methods = ["block", "bilinear"] + (["fold"] if fold_info(A).m > 1 else [])
    auto = choose_method(A, rows=N * HW * HW, in_elems=C_in, out_elems=C_out, kernel=k * k,
                         in_positions=N * HW * HW, weight_grad=True)
    fns = {}
    for m in methods + ["auto"]:
        l = AlgebraConv2d(C_in, C_out, k, A, padding=1, method=m)
        l.load_state_dict(base.state_dict())
        fns[m] = train_step(l, x, g, list(l.parameters()))
    for m in methods:
        fns["gemm:" + m] = bare_conv(A, m, N, C_in, C_out, HW, k)
    times = interleaved(fns, rounds)
    res = {"algebra": name, "d": d, "rank": A.rank, "fold_m": fold_info(A).m, "auto": auto,
           "channels": (C_in, C_out), "median_ms": {k_: 1e3 * med(v) for k_, v in times.items()}}
    if with_peak:
        res["peak_mib"] = {m: peak_mib(fns[m]) for m in methods + ["auto"]}
    return res


# ------------------------------------------------------------------------------------------- report
def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        keep = [l for l in lscpu if l.split(":")[0].strip() in
                ("Architecture", "CPU(s)", "Model name", "Thread(s) per core", "Core(s) per socket",
                 "L2 cache", "L3 cache")]
    except OSError:
        keep = []
    return "\n".join(keep + [f"python {platform.python_version()}, torch {torch.__version__}, "
                             f"threads {torch.get_num_threads()}"])


def ratio(a, b):
    return a / b if b else float("nan")


def report_linear(rows, N, I, O) -> str:
    out = [f"Linear, batch {N}, {I} -> {O} elements, forward + backward, float32 (median ms):", "",
           "| algebra | d | r | m | block | fold | bilinear | auto (picks) | block/auto | auto vs its GEMMs | peak MiB block / auto |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["median_ms"]
        pick = r["auto"]
        eff = ratio(t["auto"], t.get("gemm:" + pick, float("nan")))
        fold = f"{t['fold']:.0f}" if "fold" in t else "= block"
        pk = r.get("peak_mib", {})
        out.append(f"| {r['algebra']} | {r['d']} | {r['rank']} | {r['fold_m']} | {t['block']:.0f} | {fold} | "
                   f"{t['bilinear']:.0f} | {t['auto']:.0f} ({pick}) | {ratio(t['block'], t['auto']):.2f}x | "
                   f"{eff:.2f} | {pk.get('block', float('nan')):.0f} / {pk.get('auto', float('nan')):.0f} |")
    out += ["", "Bare GEMMs of each method alone (median ms) and layer / bare GEMMs:", "",
            "| algebra | GEMMs block | GEMMs fold | GEMMs bilinear | block/GEMMs | fold/GEMMs | bilinear/GEMMs |",
            "|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["median_ms"]
        cells = []
        for m in ("block", "fold", "bilinear"):
            cells.append(f"{t['gemm:' + m]:.0f}" if "gemm:" + m in t else "-")
        effs = []
        for m in ("block", "fold", "bilinear"):
            effs.append(f"{ratio(t[m], t['gemm:' + m]):.2f}" if "gemm:" + m in t else "-")
        out.append(f"| {r['algebra']} | " + " | ".join(cells) + " | " + " | ".join(effs) + " |")
    return "\n".join(out)


def report_conv(rows, title) -> str:
    out = [title, "",
           "| algebra | elements in->out | block | fold | bilinear | auto (picks) | block/auto | auto vs its GEMMs | peak MiB block / auto |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["median_ms"]
        pick = r["auto"]
        fold = f"{t['fold']:.0f}" if "fold" in t else "= block"
        pk = r.get("peak_mib", {})
        out.append(f"| {r['algebra']} | {r['channels'][0]}->{r['channels'][1]} | {t['block']:.0f} | {fold} | "
                   f"{t['bilinear']:.0f} | {t['auto']:.0f} ({pick}) | {ratio(t['block'], t['auto']):.2f}x | "
                   f"{ratio(t['auto'], t['gemm:' + pick]):.2f} | "
                   f"{pk.get('block', float('nan')):.0f} / {pk.get('auto', float('nan')):.0f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--algebras", default=",".join(ALGEBRAS))
    ap.add_argument("--quick", action="store_true", help="only the targeted cases (H, C, M4R linear; M2R conv)")
    ap.add_argument("--conv-all", action="store_true", help="conv for every algebra at 256 real channels")
    ap.add_argument("--no-peak", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--complex-sweep", action="store_true", help="only the complex method sweep (C, M2C)")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ensure_built()
    if args.complex_sweep:
        print("## machine\n" + machine() + "\n", flush=True)
        rows = complex_sweep(args.rounds)
        print("\nForward + backward, float32, median ms over interleaved rounds:\n\n" + report_sweep(rows))
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "threads": args.threads, "sweep": rows},
                                                  indent=1))
        return 0
    algebras = ["H", "C", "M4R"] if args.quick else args.algebras.split(",")
    N, I, O = 2048, 512, 512
    print("## machine\n" + machine() + "\n", flush=True)
    results = {"machine": machine(), "threads": args.threads, "rounds": args.rounds}
    lin = []
    for name in algebras:
        r = linear_case(name, N, I, O, args.rounds, with_peak=not args.no_peak)
        lin.append(r)
        print(name, json.dumps({k: round(v, 1) for k, v in r["median_ms"].items()}), "auto:", r["auto"], flush=True)
    results["linear"] = lin
    print()
    print(report_linear(lin, N, I, O), flush=True)
    if "C" in algebras:
        c = complex_case(N, I, O, args.rounds)
        results["complex"] = c
        t = c["median_ms"]
        print(f"\nC vs torch complex64 nn.Linear (median ms): {json.dumps({k: round(v, 1) for k, v in t.items()})}"
              f"; speed-up auto {ratio(t['torch complex64'], t['C auto']):.2f}x, bilinear "
              f"{ratio(t['torch complex64'], t['C bilinear']):.2f}x; max |diff| {c['max_abs_diff']:.2e}; "
              f"peak MiB {json.dumps({k: round(v) for k, v in c['peak_mib'].items()})}", flush=True)
    convs = [conv_case("M2R", 32, 64, 64, 32, args.rounds, with_peak=not args.no_peak)]
    if args.conv_all:
        for name in algebras:
            if name == "M2R":
                continue
            e = 256 // load_dim(name)
            convs.append(conv_case(name, 32, e, e, 32, max(3, args.rounds // 2), with_peak=not args.no_peak))
    results["conv"] = convs
    print()
    print(report_conv(convs, "Conv2d 3x3, padding 1, 32x32 images, batch 32, forward + backward, float32 (median ms):"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def load_dim(name: str) -> int:
    from runtime.registry import load_algebra
    return load_algebra(name).dim


if __name__ == "__main__":
    sys.exit(main())
