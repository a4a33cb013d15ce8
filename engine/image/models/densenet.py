"""DenseNet-121/161/169/201 (Huang et al. 2017) in MLX, NHWC, parameter names as torchvision's.

``features.conv0/norm0``, ``features.denseblockN.denselayerM.{norm1,conv1,norm2,conv2}``,
``features.transitionN.{norm,conv}``, ``features.norm5`` and ``classifier``. timm's
densenet names are torchvision's; the legacy ``norm.1``/``conv.2`` spelling of old
torchvision checkpoints is renamed by :func:`sanitize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from engine.image.models.base import ArchConfig, drop_tracking, head_classes, in_channels_of, rename
from engine.image.models.layers import global_avg_pool


@dataclass(frozen=True)
class DenseNetConfig(ArchConfig):
    num_classes: int = 1000
    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    in_channels: int = 3


@dataclass(frozen=True)
class DenseNet169Config(DenseNetConfig):
    block_config: tuple[int, ...] = (6, 12, 32, 32)


@dataclass(frozen=True)
class DenseNet201Config(DenseNetConfig):
    block_config: tuple[int, ...] = (6, 12, 48, 32)


@dataclass(frozen=True)
class DenseNet161Config(DenseNetConfig):
    growth_rate: int = 48
    block_config: tuple[int, ...] = (6, 12, 36, 24)
    num_init_features: int = 96


class DenseLayer(nn.Module):
    def __init__(self, inp: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm(inp)
        self.conv1 = nn.Conv2d(inp, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        y = self.conv1(nn.relu(self.norm1(x)))
        return self.conv2(nn.relu(self.norm2(y)))


class DenseBlock(nn.Module):
    def __init__(self, n: int, inp: int, growth: int, bn_size: int):
        super().__init__()
        self.n = n
        for i in range(n):
            setattr(self, f"denselayer{i + 1}", DenseLayer(inp + i * growth, growth, bn_size))

    def __call__(self, x: mx.array) -> mx.array:
        features = [x]
        for i in range(self.n):
            features.append(self[f"denselayer{i + 1}"](mx.concatenate(features, axis=-1)))
        return mx.concatenate(features, axis=-1)


class Transition(nn.Module):
    def __init__(self, inp: int, out: int):
        super().__init__()
        self.norm = nn.BatchNorm(inp)
        self.conv = nn.Conv2d(inp, out, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)

    def __call__(self, x: mx.array) -> mx.array:
        return self.pool(self.conv(nn.relu(self.norm(x))))


class Features(nn.Module):
    def __init__(self, config: DenseNetConfig):
        super().__init__()
        c = config.num_init_features
        self.conv0 = nn.Conv2d(config.in_channels, c, 7, 2, 3, bias=False)
        self.norm0 = nn.BatchNorm(c)
        self.pool0 = nn.MaxPool2d(3, 2, 1)
        self.num_blocks = len(config.block_config)
        for i, n in enumerate(config.block_config):
            setattr(self, f"denseblock{i + 1}", DenseBlock(n, c, config.growth_rate, config.bn_size))
            c += n * config.growth_rate
            if i != len(config.block_config) - 1:
                setattr(self, f"transition{i + 1}", Transition(c, c // 2))
                c //= 2
        self.norm5 = nn.BatchNorm(c)
        self.channels = c

    def __call__(self, x: mx.array) -> mx.array:
        x = self.pool0(nn.relu(self.norm0(self.conv0(x))))
        for i in range(1, self.num_blocks + 1):
            x = self[f"denseblock{i}"](x)
            if i < self.num_blocks:
                x = self[f"transition{i}"](x)
        return self.norm5(x)


class DenseNet(nn.Module):
    def __init__(self, config: DenseNetConfig):
        super().__init__()
        self.config = config
        self.features = Features(config)
        self.classifier = nn.Linear(self.features.channels, config.num_classes)

    def forward_features(self, x: mx.array) -> mx.array:
        return nn.relu(self.features(x))

    def __call__(self, x: mx.array) -> mx.array:
        return self.classifier(global_avg_pool(self.forward_features(x)))


# Old torchvision checkpoints spell denselayer params "norm.1", "conv.2" (torchvision's own fix-up regex).
LEGACY_RULES = [(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.")]


def sanitize(weights: dict) -> dict:
    """torchvision (incl. legacy names) or timm DenseNet state dict -> this model's names."""
    return rename(drop_tracking(weights), LEGACY_RULES)


def infer_config(weights: dict) -> dict:
    """Class count and input channels from a sanitized checkpoint (the depths are the architecture's)."""
    return {**head_classes(weights, "classifier.weight"), **in_channels_of(weights, "features.conv0.weight")}
