"""`AlgebraConvTranspose1d/2d/3d`: transposed convolutions over an algebra, weight on the left at every tap.

    up = AlgebraConvTranspose2d(in_channels, out_channels, kernel_size, algebra="H", stride=2, padding=1,
                                output_padding=1, groups=1, bias=True, dilation=1, method=None)
    y = up(x)                       # x (N, in_channels * d, H, W) -> (N, out_channels * d, H', W')
    y = up(x, output_size=(2 * H, 2 * W))          # picks output_padding, as torch does

Channels are counted in algebra elements; weight (in_channels, out_channels // groups, *kernel_size, d) like
nn.ConvTranspose*d, bias (out_channels, d), and per tap y_o = sum_i w_io * x_i (weight left), so the layer is
the adjoint-shaped counterpart of AlgebraConvNd: H' = (H - 1) * stride - 2 * padding + dilation *
(kernel_size - 1) + output_padding + 1.  Only padding_mode="zeros" exists (as in torch).  `method` as for
AlgebraLinear; every method runs torch's transposed convolution on the block / folded / scheme-combined weight.

The default initialisation is variance-preserving with fan_in = in_channels // groups * prod(kernel_size) /
prod(stride) (the taps that reach one output on average).  An `init=` callable (runtime.init) sees the
weight in torch's transposed layout, so its fan_in is out_channels // groups * prod(kernel_size), as
torch.nn.init computes for nn.ConvTranspose weights.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .. import functional as AF
from .conv import AlgebraConvNd, add_conv_parameters, check_channel_args
from .linear import AlgebraLayerMixin

__all__ = ["AlgebraConvTranspose1d", "AlgebraConvTranspose2d", "AlgebraConvTranspose3d"]


class _AlgebraConvTransposeNd(AlgebraLayerMixin, nn.Module):
    _nd = 0
    transposed = True          # as torch's _ConvNd: the weight is (in, out // groups, *kernel, d)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, algebra, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros",
                 method: str | None = None, device=None, dtype=None, init: Callable | None = None) -> None:
        super().__init__()
        nd = self._nd
        cls = type(self).__name__
        check_channel_args(cls, in_channels, out_channels, groups, algebra)
        if padding_mode != "zeros":
            raise ValueError(f'{cls}: only padding_mode="zeros" is supported for transposed convolutions (as in '
                             f'torch), got {padding_mode!r}')
        if isinstance(padding, str):
            raise ValueError(f"{cls}: padding must be an int or a tuple for transposed convolutions, got "
                             f"{padding!r}")
        self._setup_algebra(algebra, method, cls)
        self.kernel_size = AF.ntuple(kernel_size, nd, "kernel_size", cls)
        self.stride = AF.ntuple(stride, nd, "stride", cls)
        self.padding = AF.ntuple(padding, nd, "padding", cls)
        self.output_padding = AF.ntuple(output_padding, nd, "output_padding", cls)
        self.dilation = AF.ntuple(dilation, nd, "dilation", cls)
        AF.check_output_padding(self.output_padding, self.stride, self.dilation, cls)
        self.padding_mode = padding_mode
        add_conv_parameters(self, in_channels, out_channels, groups, bias, init, device, dtype, transposed=True)

    def reset_parameters(self) -> None:
        self._reset_parameters(self.in_channels // self.groups * math.prod(self.kernel_size)
                               / math.prod(self.stride))

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        """x (N, in_channels*d, *spatial) or unbatched; output_size: the spatial output size (or the full
        output shape) to reach, which sets output_padding as in torch."""
        output_padding = self.output_padding
        if output_size is not None:
            spatial = x.shape[-self._nd:] if x.dim() > self._nd else ()
            output_padding = AF.conv_transpose_output_padding(spatial, output_size, self.stride, self.padding,
                                                              self.kernel_size, self.dilation, self._who)
        return AF.conv_transpose_impl(x, self.weight, self.bias, self.algebra, self._nd, self.stride, self.padding,
                                      output_padding, self.groups, self.dilation, self.padding_mode, self.method,
                                      self._who)

    def extra_repr(self) -> str:
        s = AlgebraConvNd.extra_repr(self)          # the fields the two share (it reads only attributes)
        if self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        return s


class AlgebraConvTranspose1d(_AlgebraConvTransposeNd):
    """1-D transposed algebra convolution: (N, in_channels*d, L) -> (N, out_channels*d, L'); see the module
    docstring."""

    _nd = 1


class AlgebraConvTranspose2d(_AlgebraConvTransposeNd):
    """2-D transposed algebra convolution: (N, in_channels*d, H, W) -> (N, out_channels*d, H', W')."""

    _nd = 2


class AlgebraConvTranspose3d(_AlgebraConvTransposeNd):
    """3-D transposed algebra convolution: (N, in_channels*d, D, H, W) -> (N, out_channels*d, D', H', W')."""

    _nd = 3
