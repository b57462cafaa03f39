"""The geometry of one (transposed) convolution, as the methods' conv implementations receive it."""
from __future__ import annotations

from typing import NamedTuple


class ConvGeometry(NamedTuple):
    """nd spatial dims; stride, padding (symmetric, already reduced from 'same' / padding modes), dilation and
    output_padding as nd-tuples; groups; transposed: a transposed convolution (weight (C_in, C_out // groups,
    *kernel, d), torch's layout) rather than a plain one (weight (C_out, C_in // groups, *kernel, d))."""

    nd: int
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    transposed: bool = False
    output_padding: tuple[int, ...] = ()
