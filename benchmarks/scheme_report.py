"""Print the scheme table of docs/schemes.md from the built algebras (run after `python -m codegen build`).

For each algebra: dimension, naive multiplications, rank, provenance, additions (naive -> after CSE, per
map: weight / activation / post) and the float32 normwise relative error of the scheme against the float64
naive product on 65,536 random element pairs (max and median).
"""
from __future__ import annotations

import torch

from runtime import available_algebras, load_algebra


def relative_error(A, n: int = 65536, seed: int = 0) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, A.dim, generator=g, dtype=torch.float64)
    y = torch.randn(n, A.dim, generator=g, dtype=torch.float64)
    ref = A.mul(x, y)
    got = A.mul_scheme(x.float(), y.float()).double()
    naive32 = A.mul(x.float(), y.float()).double()
    scale = x.norm(dim=-1) * y.norm(dim=-1)
    rel = (got - ref).norm(dim=-1) / scale
    rel_naive = (naive32 - ref).norm(dim=-1) / scale
    return rel.max().item(), rel_naive.max().item()


def main() -> None:
    print("| algebra | d | naive mults | rank | how found | additions naive (w/a/p) | after CSE (w/a/p) | "
          "run-time adds (a+p) | unusual coefficients | fp32 rel. error scheme / naive (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in available_algebras():
        A = load_algebra(name)
        s = A.scheme
        n, o = s.additions["naive"], s.additions["optimised"]
        err, err_naive = relative_error(A)
        fmt = (lambda c: f"{c['weight']}/{c['activation']}/{c['post']}")
        print(f"| {name} | {A.dim} | {A.naive_multiplications} | {s.rank} | {s.provenance} | {fmt(n)} | {fmt(o)} | "
              f"{o['activation'] + o['post']} | {', '.join(s.unusual_coefficients) or '-'} | "
              f"{err:.1e} / {err_naive:.1e} |")


if __name__ == "__main__":
    main()
