"""The cost model behind `auto`: modelled cost (MAC-equivalents) of one forward pass of each torch path.

GEMM MACs are scaled by a shape-efficiency factor, and the memory traffic each method adds (fold's permute
copies, bilinear's combination passes) is charged in MAC-equivalents.  Constants: BETA, the cost of moving one
float through memory (read or write) relative to one GEMM MAC at full speed; EDGE, the dimension at which a
GEMM runs at half efficiency along that axis; OP, the fixed cost of one op (~10 us of dispatch at ~50 GMAC/s).
Set from measurements on the benchmark machine (docs/benchmarks.md); only the ratios matter.  The fold and
bilinear paths run a Python autograd.Function and about twice as many ops as block's one native GEMM, hence
their op counts.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import Algebra
from .complex import complex_plan

__all__ = ["LayerShape", "block_cost", "fold_cost", "bilinear_cost", "complex_cost"]

BETA = 24.0
EDGE = 24.0
OP = 5.0e5


@dataclass(frozen=True)
class LayerShape:
    """The sizes of one layer call.  rows: GEMM rows (batch for linear, batch * output positions for conv,
    batch * input positions for a transposed conv); in_elems / out_elems: channels in algebra elements;
    kernel: taps per row; in_positions / out_positions: batch * input / output positions (conv; default rows);
    weight_grad: the weight expansion / combinations are recomputed per call (training) rather than cached;
    complex_ok: the call may run torch's complex ops, as the complex method does: it computes in float32 /
    float64 (no half weight, no autocast) and is not being exported to ONNX (which has no complex GEMM)."""

    rows: int
    in_elems: int
    out_elems: int
    groups: int = 1
    kernel: int = 1
    in_positions: int | None = None
    out_positions: int | None = None
    weight_grad: bool = True
    complex_ok: bool = True

    @property
    def act_in(self) -> int:
        return (self.rows if self.in_positions is None else self.in_positions) * self.in_elems

    @property
    def act_out(self) -> int:
        return (self.rows if self.out_positions is None else self.out_positions) * self.out_elems

    @property
    def weight_elems(self) -> int:
        return self.out_elems * (self.in_elems // max(self.groups, 1)) * self.kernel

    @property
    def k_in(self) -> int:
        """Weight elements per output element of one group (in_elems / groups * kernel)."""
        return self.in_elems // max(self.groups, 1) * self.kernel

    @property
    def n_out(self) -> int:
        return self.out_elems // max(self.groups, 1)


def _gemm(M: float, K: float, N: float, batch: float = 1.0, scale: float = 1.0) -> float:
    """batch GEMMs (M x K) by (K x N), each `scale` times a real one's arithmetic, plus one op each."""
    eff = 1.0 / (1.0 + EDGE / max(M, 1) + EDGE / max(K, 1) + EDGE / max(N, 1))
    return batch * (scale * M * K * N / eff + OP)


def _weight_work(s: LayerShape, per_elem: float, d: int) -> float:
    """Expanding / combining the weight per call (training only): `per_elem` outputs per weight element."""
    return (1.0 if s.weight_grad else 0.0) * s.weight_elems * per_elem * (d / 4 + 2 * BETA)


def block_cost(A: Algebra, s: LayerShape) -> float:
    d = A.dim
    return (_gemm(s.rows, s.k_in * d, s.n_out * d, max(s.groups, 1)) + BETA * d * (s.act_in + s.act_out)
            + _weight_work(s, d * d, d) + 5 * OP)


def fold_cost(A: Algebra, s: LayerShape) -> float:
    plan, d = A.fold, A.dim
    if plan.m == 1:
        return block_cost(A, s)
    m, p = plan.m, plan.p
    change = 0.0 if plan.change_in is None else (d + BETA) * d * (s.act_in + s.act_out)   # F x, G y per element
    return (_gemm(s.rows * m, s.k_in * p, s.n_out * p, max(s.groups, 1)) + BETA * d * 3 * (s.act_in + s.act_out)
            + change + _weight_work(s, p * p, d) + 12 * OP)


def bilinear_cost(A: Algebra, s: LayerShape) -> float:
    d, r = A.dim, A.rank
    return (_gemm(s.rows, s.k_in, s.n_out, max(s.groups, 1) * r)
            + BETA * (s.act_in * (d + 2 * r) + s.act_out * (2 * r + d)) + _weight_work(s, r, d) + 12 * OP)


# A complex GEMM of (M x K) by (K x N) costs CGEMM times the real GEMM of that size (4 real multiplications per
# complex product, in one kernel); torch's CPU complex convolution runs 3 real convolutions and CCONV times that
# covers its real / imaginary splits and recombination.  Measured on the benchmark machine (docs/benchmarks.md).
CGEMM = 4.0
CCONV = 4.0


def complex_cost(A: Algebra, s: LayerShape) -> float:
    """The complex method: torch's complex GEMM (linear) or complex convolution on the complex views; a conv
    copies its input and output to and from the interleaved (re, im) layout; a fold plan (m > 1) adds the fold
    copies.  Infinite where the method does not apply or the call is in half precision / under autocast (no
    half-precision complex GEMM on CPU: auto leaves those to the real paths)."""
    cp = complex_plan(A)
    if cp is None or not s.complex_ok:
        return float("inf")
    d, m, q = A.dim, cp.m, cp.q
    conv = s.in_positions is not None or s.out_positions is not None
    core = _gemm(s.rows * m, s.k_in * q, s.n_out * q, max(s.groups, 1), CCONV if conv else CGEMM)
    # copies per activation float: a conv's interleave in and out; a fold's fold / unfold copies (as fold's)
    moves = (2.0 if conv else 0.0) + (3.0 if cp.plan is not None else 0.0)
    # a change: per element d x d products in and out, forward and backward, not fused with the fold copies as
    # fold's are (measured for Cl(3,0): complex 1.1-1.25x fold's time); 3x fold's charge and 4 more ops
    change = 0.0 if cp.change_in is None else 3 * (d + BETA) * d * (s.act_in + s.act_out) + 4 * OP
    return (core + change + BETA * d * moves * (s.act_in + s.act_out)
            + (0.0 if cp.direct and not conv else _weight_work(s, 2 * q * q, d)) + (8 if conv else 4) * OP)
