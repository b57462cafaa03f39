"""ResNet builder over any algebra: basic and bottleneck blocks, CIFAR and ImageNet stems.

    model = resnet("H", block="basic", layers=(2, 2, 2, 2), widths=(16, 32, 64, 128), num_classes=10)
    model = resnet("M2R", widths=matched_widths((64, 128, 256, 512), "M2R", match="params"))

Widths count algebra elements per stage.  The input is lifted into the algebra by `AlgebraLift`
("embed": each real input channel becomes one element, x * unit), every convolution is an algebra
convolution, normalisation is `AlgebraBatchNorm2d` (``norm=`` its mode), the activation is split
(component-wise, ``activation=``) or ``"modrelu"``; the head is global average pooling and an
`AlgebraReadout` (a real linear layer over all components).  With algebra "R" this is the usual ResNet.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..learned_algebra import describe
from ..init import init_model_
from ..layers.activation import ModReLU, SplitActivation
from ..layers.lift import AlgebraLift, AlgebraReadout
from ..layers.norm import AlgebraBatchNorm2d
from ..layers.pool import AlgebraAdaptiveAvgPool2d, AlgebraMaxPool2d

__all__ = ["resnet", "AlgebraResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet50"]


def _conv(algebra, cin, cout, k, stride=1, padding=0, method=None):
    from ..layers import AlgebraConv2d

    kw = {} if method is None else {"method": method}
    return AlgebraConv2d(cin, cout, k, stride=stride, padding=padding, bias=False, algebra=algebra, **kw)


def _act(activation, algebra, channels):
    if activation == "modrelu":
        return ModReLU(channels, algebra=algebra, dim=1)
    return SplitActivation(activation, algebra=algebra)


def _shortcut(algebra, cin, cout, stride, norm, method) -> nn.Module:
    """Identity, or a strided 1x1 algebra conv + norm where the block changes shape."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(_conv(algebra, cin, cout, 1, stride, 0, method),
                         AlgebraBatchNorm2d(cout, algebra=algebra, mode=norm))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, algebra="R", norm="component", activation="relu", method=None):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv(algebra, cin, planes, 3, stride, 1, method)
        self.bn1 = AlgebraBatchNorm2d(planes, algebra=algebra, mode=norm)
        self.act1 = _act(activation, algebra, planes)
        self.conv2 = _conv(algebra, planes, cout, 3, 1, 1, method)
        self.bn2 = AlgebraBatchNorm2d(cout, algebra=algebra, mode=norm)
        self.act2 = _act(activation, algebra, cout)
        self.shortcut = _shortcut(algebra, cin, cout, stride, norm, method)

    def last_norm(self):
        return self.bn2

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act2(y + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, algebra="R", norm="component", activation="relu", method=None):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv(algebra, cin, planes, 1, 1, 0, method)
        self.bn1 = AlgebraBatchNorm2d(planes, algebra=algebra, mode=norm)
        self.act1 = _act(activation, algebra, planes)
        self.conv2 = _conv(algebra, planes, planes, 3, stride, 1, method)
        self.bn2 = AlgebraBatchNorm2d(planes, algebra=algebra, mode=norm)
        self.act2 = _act(activation, algebra, planes)
        self.conv3 = _conv(algebra, planes, cout, 1, 1, 0, method)
        self.bn3 = AlgebraBatchNorm2d(cout, algebra=algebra, mode=norm)
        self.act3 = _act(activation, algebra, cout)
        self.shortcut = _shortcut(algebra, cin, cout, stride, norm, method)

    def last_norm(self):
        return self.bn3

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.act2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.act3(y + self.shortcut(x))


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class AlgebraResNet(nn.Module):
    def __init__(self, algebra="R", block="basic", layers: Sequence[int] | None = None,
                 widths: Sequence[int] = (64, 128, 256, 512), stem: str = "cifar", in_channels: int = 3,
                 num_classes: int = 10, stem_width: int | None = None, norm: str = "component",
                 activation: str = "relu", method: str | None = None, lift: str = "embed",
                 zero_init_residual: bool = False, init: str | None = "he"):
        super().__init__()
        A = describe(algebra)
        self.algebra = A
        if block not in _BLOCKS:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if layers is None:
            layers = (2,) * len(widths)
        if len(layers) != len(widths):
            raise ValueError("layers and widths need one entry per stage")
        Block = _BLOCKS[block]
        self.block, self.stem_kind = block, stem
        sw = int(stem_width or widths[0])
        if lift == "embed":
            self.lift = AlgebraLift(in_channels, algebra=A, mode="embed", dim=1)
            lifted = in_channels
        else:
            lifted = max(1, in_channels)
            self.lift = AlgebraLift(in_channels, algebra=A, out_features=lifted, mode="linear", dim=1)
        if stem == "cifar":
            self.stem = nn.Sequential(_conv(A, lifted, sw, 3, 1, 1, method),
                                      AlgebraBatchNorm2d(sw, algebra=A, mode=norm), _act(activation, A, sw))
        elif stem == "imagenet":
            self.stem = nn.Sequential(_conv(A, lifted, sw, 7, 2, 3, method),
                                      AlgebraBatchNorm2d(sw, algebra=A, mode=norm), _act(activation, A, sw),
                                      AlgebraMaxPool2d(3, 2, 1, algebra=A))
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        stages, cin = [], sw
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for b in range(n):
                stride = 2 if (b == 0 and i > 0) else 1
                blocks.append(Block(cin, w, stride, A, norm, activation, method))
                cin = w * Block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = AlgebraAdaptiveAvgPool2d(1, algebra=A)
        self.head = AlgebraReadout(cin, num_classes, algebra=A)
        self.features = cin
        if init is not None:
            init_model_(self, scheme=init, nonlinearity="relu")
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)) and m.last_norm().affine:
                    nn.init.zeros_(m.last_norm().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.lift(x))
        x = self.stages(x)
        return self.head(self.pool(x).flatten(1))


def resnet(algebra="R", block="basic", layers=None, widths=(64, 128, 256, 512), stem="cifar",
           **kwargs) -> AlgebraResNet:
    """Build a ResNet over `algebra` (layers: blocks per stage, default 2 per entry of `widths`); see
    `AlgebraResNet` for the keyword arguments."""
    return AlgebraResNet(algebra, block, None if layers is None else tuple(layers), tuple(widths), stem, **kwargs)


def resnet18(algebra="R", widths=(64, 128, 256, 512), stem="imagenet", **kwargs) -> AlgebraResNet:
    return resnet(algebra, "basic", (2, 2, 2, 2), widths, stem, **kwargs)


def resnet50(algebra="R", widths=(64, 128, 256, 512), stem="imagenet", **kwargs) -> AlgebraResNet:
    return resnet(algebra, "bottleneck", (3, 4, 6, 3), widths, stem, **kwargs)
