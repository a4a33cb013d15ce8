"""ResNet (He et al. 2015) in MLX, NHWC, parameter names as torchvision's.

BasicBlock (ResNet-18/34) and Bottleneck (ResNet-50/101/152, stride on the 3x3
conv as in torchvision's "v1.5"); ``groups`` and ``width_per_group`` cover
ResNeXt and Wide ResNet. timm's resnet names are torchvision's, so a timm
checkpoint loads as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from engine.image.models.base import ArchConfig, drop_tracking, head_classes, in_channels_of
from engine.image.models.layers import global_avg_pool


@dataclass(frozen=True)
class ResNetConfig(ArchConfig):
    num_classes: int = 1000
    block: str = "basic"
    layers: tuple[int, ...] = (2, 2, 2, 2)
    groups: int = 1
    width_per_group: int = 64
    in_channels: int = 3


@dataclass(frozen=True)
class ResNet18Config(ResNetConfig):
    pass


@dataclass(frozen=True)
class ResNet34Config(ResNetConfig):
    layers: tuple[int, ...] = (3, 4, 6, 3)


@dataclass(frozen=True)
class ResNet50Config(ResNetConfig):
    block: str = "bottleneck"
    layers: tuple[int, ...] = (3, 4, 6, 3)


@dataclass(frozen=True)
class ResNet101Config(ResNet50Config):
    layers: tuple[int, ...] = (3, 4, 23, 3)


@dataclass(frozen=True)
class ResNet152Config(ResNet50Config):
    layers: tuple[int, ...] = (3, 8, 36, 3)


def _conv(i: int, o: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(i, o, k, stride, (k - 1) // 2, groups=groups, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: bool, groups: int, base_width: int):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64")
        self.conv1 = _conv(inplanes, planes, 3, stride)
        self.bn1 = nn.BatchNorm(planes)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm(planes)
        if downsample:
            self.downsample = [_conv(inplanes, planes, 1, stride), nn.BatchNorm(planes)]

    def __call__(self, x: mx.array) -> mx.array:
        out = nn.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.downsample[1](self.downsample[0](x)) if "downsample" in self else x
        return nn.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: bool, groups: int, base_width: int):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out = planes * self.expansion
        self.conv1 = _conv(inplanes, width, 1)
        self.bn1 = nn.BatchNorm(width)
        self.conv2 = _conv(width, width, 3, stride, groups)
        self.bn2 = nn.BatchNorm(width)
        self.conv3 = _conv(width, out, 1)
        self.bn3 = nn.BatchNorm(out)
        if downsample:
            self.downsample = [_conv(inplanes, out, 1, stride), nn.BatchNorm(out)]

    def __call__(self, x: mx.array) -> mx.array:
        out = nn.relu(self.bn1(self.conv1(x)))
        out = nn.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample[1](self.downsample[0](x)) if "downsample" in self else x
        return nn.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig):
        super().__init__()
        if config.block not in ("basic", "bottleneck"):
            raise ValueError(f"unknown ResNet block '{config.block}' (basic or bottleneck)")
        if len(config.layers) != 4:
            raise ValueError("a ResNet has four stages of blocks")
        self.config = config
        block = BasicBlock if config.block == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(config.in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), config.layers, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                needs_ds = j == 0 and (s != 1 or inplanes != planes * block.expansion)
                blocks.append(block(inplanes, planes, s, needs_ds, config.groups, config.width_per_group))
                inplanes = planes * block.expansion
            setattr(self, f"layer{i + 1}", blocks)
        self.fc = nn.Linear(512 * block.expansion, config.num_classes)

    def forward_features(self, x: mx.array) -> mx.array:
        x = self.maxpool(nn.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for blk in stage:
                x = blk(x)
        return x

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc(global_avg_pool(self.forward_features(x)))


def sanitize(weights: dict) -> dict:
    """torchvision or timm ResNet state dict -> this model's names (they coincide)."""
    return drop_tracking(weights)


def infer_config(weights: dict) -> dict:
    """Class count and input channels from a sanitized checkpoint (the depth is the architecture's)."""
    return {**head_classes(weights, "fc.weight"), **in_channels_of(weights, "conv1.weight")}
