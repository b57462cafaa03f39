"""CPU benchmark of the transposed convolution and the LSTM: forward + backward, float32, medians
of interleaved rounds (helpers and machine report from bench_layers.py).

    .venv/bin/python benchmarks/bench_new_layers.py                  # a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_new_layers.py --threads 1 --rounds 9 --algebras H,M4R

Cases
  convT  ConvTranspose2d 4x4, stride 2, padding 1, batch 16, 16x16 -> 32x32, 256 real channels on each side
         (256 // d elements): block / fold / bilinear / auto.
  lstm   LSTM, 32 steps, batch 16, input and hidden 256 reals (256 // d elements): block / fold / bilinear /
         auto (its picks for the input / hidden projection), and "per-step" = auto with the hidden projection as a plain algebra_linear call per step
         (weight expanded / combined every step) instead of linear_stepper's once per forward.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from bench_layers import ensure_built, interleaved, machine, med, ratio, train_step  # noqa: E402


def conv_transpose_case(name: str, rounds: int) -> dict:
    from runtime.functional import choose_method, fold_info
    from runtime.layers import AlgebraConvTranspose2d
    from runtime.registry import load_algebra
    A = load_algebra(name)
    d, C, N, HW = A.dim, 256 // A.dim, 16, 16
    torch.manual_seed(0)
    x = torch.randn(N, C * d, HW, HW, requires_grad=True)
    g = torch.randn(N, C * d, 2 * HW, 2 * HW)
    base = AlgebraConvTranspose2d(C, C, 4, A, stride=2, padding=1)
    methods = ["block", "bilinear"] + (["fold"] if fold_info(A).m > 1 else []) + ["auto"]
    fns = {}
    for m in methods:
        layer = AlgebraConvTranspose2d(C, C, 4, A, stride=2, padding=1, method=m)
        layer.load_state_dict(base.state_dict())
        fns[m] = train_step(layer, x, g, list(layer.parameters()))
    pick = choose_method(A, rows=N * HW * HW, in_elems=C, out_elems=C, kernel=16, out_positions=4 * N * HW * HW,
                         weight_grad=True)
    return {"algebra": name, "elements": C, "auto": pick,
            "ms": {k: 1e3 * med(v) for k, v in interleaved(fns, rounds).items()}}


def lstm_case(name: str, rounds: int) -> dict:
    import runtime.functional as AF
    from runtime.functional import choose_method, fold_info
    from runtime.layers import AlgebraLSTM
    from runtime.registry import load_algebra
    A = load_algebra(name)
    d, H, L, N = A.dim, 256 // A.dim, 32, 16
    torch.manual_seed(0)
    x = torch.randn(L, N, H * d, requires_grad=True)
    g = torch.randn(L, N, H * d)
    base = AlgebraLSTM(H, H, A)
    methods = ["block", "bilinear"] + (["fold"] if fold_info(A).m > 1 else []) + ["auto"]
    fns = {}
    for m in methods:
        layer = AlgebraLSTM(H, H, A, method=m)
        layer.load_state_dict(base.state_dict())
        fns[m] = train_step(lambda t, layer=layer: layer(t)[0], x, g, list(layer.parameters()))
    stepper = AF.linear_stepper

    def per_step(w, b, A_, method, consts, rows, who):
        return lambda h: AF.linear_impl(h, w, b, A_, method, consts, who)

    naive = train_step(lambda t: base(t)[0], x, g, list(base.parameters()))

    def naive_step():
        AF.linear_stepper = per_step
        try:
            naive()
        finally:
            AF.linear_stepper = stepper

    fns["per-step"] = naive_step
    pick = (choose_method(A, rows=L * N, in_elems=H, out_elems=4 * H, weight_grad=True) + " / "
            + choose_method(A, rows=N, in_elems=H, out_elems=4 * H, weight_grad=False))
    return {"algebra": name, "elements": H, "auto": pick,
            "ms": {k: 1e3 * med(v) for k, v in interleaved(fns, rounds).items()}}


def report(rows, title: str, extra: tuple[str, ...] = ()) -> str:
    cols = ("block", "fold", "bilinear", "auto") + extra
    out = [title, "", "| algebra | elements | " + " | ".join(cols) + " | block/auto |",
           "|---|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        t = r["ms"]
        cells = [(f"{t[c]:.1f}" + (f" ({r['auto']})" if c == "auto" else "")) if c in t else "= block" for c in cols]
        out.append(f"| {r['algebra']} | {r['elements']} | " + " | ".join(cells) + f" | "
                   f"{ratio(t['block'], t['auto']):.2f}x |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--algebras", default="C,H,M2R,M4R")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ensure_built()
    names = args.algebras.split(",")
    print("## machine\n" + machine() + "\n", flush=True)
    print(report([conv_transpose_case(n, args.rounds) for n in names],
                 "ConvTranspose2d 4x4/2, batch 16, 16x16 -> 32x32, forward + backward (median ms):") + "\n",
          flush=True)
    print(report([lstm_case(n, args.rounds) for n in names],
                 "LSTM, 32 steps, batch 16, forward + backward (median ms):", ("per-step",)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
