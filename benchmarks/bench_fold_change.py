"""CPU benchmark of folding through a basis change: Cl(2,0) and the split-quaternions (both isomorphic
to M2(R), in bases no permutation folds) against M2R itself, forward + backward, float32, medians of
interleaved rounds.

    .venv/bin/python benchmarks/bench_fold_change.py [--threads 2] [--rounds 15]

Cases: linear (batch 2048, 512 -> 512 elements) and conv2d (3x3, padding 1, 32x32 images, batch 32, 64 -> 64
elements), methods fold and block.  The three algebras are built into a temporary folder from the specs below.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from bench_layers import interleaved, med, train_step  # noqa: E402

SPECS = '''
from codegen.spec import algebra, clifford
M2R = algebra("M2R", basis=["E11", "E12", "E21", "E22"], missing="zero",
              products={f"E{a}{b}*E{b}{c}": f"E{a}{c}" for a in (1, 2) for b in (1, 2) for c in (1, 2)})
Cl20 = clifford(2, 0, name="Cl20")
SplitH = algebra("SplitH", basis=["1", "i", "j", "k"], unit="1",
                 products={"i*i": "-1", "j*j": "1", "k*k": "1", "i*j": "k", "j*i": "-k", "j*k": "-i", "k*j": "i",
                           "k*i": "j", "i*k": "-j"})
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from codegen.build import build
    from runtime.functional import fold_info
    from runtime.layers import AlgebraConv2d, AlgebraLinear
    from runtime.registry import load_algebra

    root = Path(tempfile.mkdtemp(prefix="algebranets_foldchange_"))
    (root / "specs").mkdir()
    (root / "specs" / "algebras.py").write_text(SPECS)
    build(root / "specs", root / "out")
    names = ["M2R", "Cl20", "SplitH"]
    algebras = {n: load_algebra(n, path=root / "out") for n in names}
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}")
    for n, A in algebras.items():
        plan = fold_info(A)
        print(f"{n:7} fold m={plan.m} p={plan.p} basis change: {plan.change_in is not None}")
    torch.manual_seed(0)
    cases = {}
    N, I, O = 2048, 512, 512
    x, g = torch.randn(N, I * 4, requires_grad=True), torch.randn(N, O * 4)
    xc, gc = torch.randn(32, 64 * 4, 32, 32, requires_grad=True), torch.randn(32, 64 * 4, 32, 32)
    for n, A in algebras.items():
        for method in ("fold", "block"):
            lin = AlgebraLinear(I, O, A, method=method)
            cases[f"linear {n} {method}"] = train_step(lin, x, g, list(lin.parameters()))
            conv = AlgebraConv2d(64, 64, 3, A, padding=1, method=method)
            cases[f"conv2d {n} {method}"] = train_step(conv, xc, gc, list(conv.parameters()))
    times = interleaved(cases, args.rounds)
    print(f"{'case':<24} {'median ms':>10} {'vs M2R fold':>12}")
    for kind in ("linear", "conv2d"):
        ref = med(times[f"{kind} M2R fold"])
        for n in names:
            for method in ("fold", "block"):
                t = med(times[f"{kind} {n} {method}"])
                print(f"{kind + ' ' + n + ' ' + method:<24} {1e3 * t:>10.1f} {t / ref:>12.2f}")


if __name__ == "__main__":
    main()
