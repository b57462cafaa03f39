"""After `examples.pareto`: what the learned algebras learned, and what rounding them to a built algebra costs.

    python -m examples.pareto_learned                      # the learned-algebra checkpoints of docs/pareto
    python -m examples.pareto_learned --out my_pareto --steps 200

For every trained checkpoint of a learned algebra (PHM<d>) in OUT/checkpoints, each layer's structure tensor T is
compared with every built algebra of its dimension up to a change of basis (runtime.learned_algebra.nearest_known:
a local search, so a distance it reports is reached and a smaller one may exist), and the model's validation bits
per character are measured again with T replaced, in every layer at once and without retraining, by
  nearest   each layer's nearest built algebra (a copy isomorphic to it, in the basis closest to T), and
  <name>    each candidate's nearest copy in every layer (is the model one algebra away from, say, H?).
Writes OUT/learned.json and OUT/learned.md (one table per checkpoint).  Nothing is trained; one torch thread.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import Counter
from pathlib import Path

import torch

from . import compare, pareto
from .training.cli import UserError, positive_int
from .training.cli import run as run_cli
from .training.results import save_json, save_text
from .training.stdlib_text import Corpus, stdlib_corpus


def _run_row(out: Path, key: str) -> dict:
    return json.loads((out / "runs" / f"{key}.json").read_text())


def analyse(key: str, out: Path, corpus: Corpus, steps: int, restarts: int) -> dict:
    """The row of one learned-algebra checkpoint OUT/checkpoints/<key>.pt (its run file OUT/runs/<key>.json);
    corpus: the run's (examples.pareto keeps one corpus and budget per folder)."""
    from runtime.learned_algebra import LearnedAlgebra, nearest_known

    row = _run_row(out, key)
    budget = row["budget"]
    model = pareto.load_model(out / "checkpoints" / f"{key}.pt")
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LearnedAlgebra)]
    found = {n: nearest_known(m.T, steps=steps, restarts=restarts) for n, m in layers}
    names = [c.name for c in next(iter(found.values()))]

    def bits_with(pick) -> float:
        rounded = copy.deepcopy(model)
        with torch.no_grad():
            for n, m in rounded.named_modules():
                if isinstance(m, LearnedAlgebra):
                    m.T.copy_(pick(found[n]).structure.to(m.T.dtype))
        return compare.lm_bits(rounded, corpus.val, budget["seq_len"])

    result = dict(key=key, algebra=row["algebra"], size=row["size"], seed=row["seed"], layers=len(layers),
                  bits_trained=compare.lm_bits(model, corpus.val, budget["seq_len"]),
                  bits_nearest=bits_with(lambda cands: cands[0]),
                  nearest_counts=dict(Counter(c[0].name for c in found.values())),
                  distance={name: sorted(next(c.distance for c in cands if c.name == name) for cands in found.values())
                            for name in names})
    for name in names:
        result[f"bits_{name}"] = bits_with(lambda cands, name=name: next(c for c in cands if c.name == name))
    return result


def markdown(rows: list[dict]) -> str:
    text = ("| model | layers | nearest built algebra (layers) | median distance to each | bits/char trained | "
            "all layers rounded to their nearest | all rounded to one algebra |\n|---|---|---|---|---|---|---|\n")
    for r in rows:
        names = list(r["distance"])
        med = ", ".join(f"{n} {sorted(r['distance'][n])[len(r['distance'][n]) // 2]:.2f}" for n in names)
        counts = ", ".join(f"{n} {c}" for n, c in sorted(r["nearest_counts"].items(), key=lambda kv: -kv[1]))
        one = ", ".join(f"{n} {r[f'bits_{n}']:.3f}" for n in names)
        text += (f"| {r['key']} | {r['layers']} | {counts} | {med} | {r['bits_trained']:.3f} | "
                 f"{r['bits_nearest']:.3f} | {one} |\n")
    return text + ("\nDistance: ||T - nearest copy|| / ||T|| per layer (0: T is that algebra in some basis), found by "
                   "a local search over bases. Rounding replaces every layer's T at once, without retraining.\n")


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m examples.pareto_learned", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/pareto"), help="the examples.pareto folder")
    p.add_argument("--steps", type=positive_int, default=300, help="Adam steps of the basis search")
    p.add_argument("--restarts", type=positive_int, default=8, help="starting bases per candidate (one identity)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    keys = sorted(p.stem for p in (args.out / "checkpoints").glob("PHM*.pt"))
    if not keys:
        raise UserError(f"{args.out}/checkpoints holds no learned-algebra checkpoint (PHM*.pt): run python -m "
                        f"examples.pareto --out {args.out} with a learned algebra first")
    budget = _run_row(args.out, keys[0])["budget"]
    corpus = stdlib_corpus(budget["train_bytes"], budget["val_bytes"])         # read once: one budget per folder
    rows = []
    for key in keys:
        rows.append(analyse(key, args.out, corpus, args.steps, args.restarts))
        print(f"  {key}: trained {rows[-1]['bits_trained']:.3f}, rounded to nearest {rows[-1]['bits_nearest']:.3f} "
              f"bits/char ({rows[-1]['nearest_counts']})", flush=True)
    save_json(args.out / "learned.json", {"rows": rows, "steps": args.steps, "restarts": args.restarts})
    text = markdown(rows)
    save_text(args.out / "learned.md", text)
    print(text)
    return rows


def cli() -> int:
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
