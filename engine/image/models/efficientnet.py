"""EfficientNet-B0..B7 (Tan & Le 2019) in MLX, NHWC, parameter names as torchvision's.

``features.0`` stem, ``features.1..7`` the MBConv stages (``features.s.b.block.k``),
``features.8`` the 1x1 head conv, ``classifier.1`` the Linear head. Squeeze-and-
excitation uses 1x1 convs with bias (``fc1``, ``fc2``). timm's ``efficientnet_b0``
naming (``conv_stem``, ``blocks.s.b.conv_dw``, ``se.conv_reduce``...) is renamed
by :func:`sanitize`. (timm's ``tf_efficientnet_*`` use TF "same" padding and are
not covered.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from engine.image.models.base import ArchConfig, head_classes, in_channels_of, sanitize_timm, timm_stem_head_rules
from engine.image.models.layers import conv_norm, global_avg_pool, make_divisible, mean_f32, run_conv_norm

# expand ratio, kernel, stride, in channels, out channels, layers (B0 baseline).
STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


@dataclass(frozen=True)
class EfficientNetConfig(ArchConfig):
    num_classes: int = 1000
    width_mult: float = 1.0
    depth_mult: float = 1.0
    bn_eps: float = 1e-5  # torchvision uses 1e-3 for B5..B7
    in_channels: int = 3


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def __call__(self, x: mx.array) -> mx.array:
        s = mean_f32(x, axis=(1, 2), keepdims=True)
        s = mx.sigmoid(self.fc2(nn.silu(self.fc1(s))))
        return x * s


class MBConv(nn.Module):
    """[1x1 expand] -> kxk depthwise -> squeeze-excite -> 1x1 project, skip when shapes allow."""

    def __init__(self, expand: float, kernel: int, stride: int, inp: int, out: int, eps: float):
        super().__init__()
        self.use_res = stride == 1 and inp == out
        hidden = make_divisible(inp * expand)
        layers: list = []
        if hidden != inp:
            layers.append(conv_norm(inp, hidden, 1, eps=eps))
        layers.append(conv_norm(hidden, hidden, kernel, stride, groups=hidden, eps=eps))
        layers.append(SqueezeExcitation(hidden, max(1, inp // 4)))
        layers.append(conv_norm(hidden, out, 1, eps=eps))
        self.block = layers

    def __call__(self, x: mx.array) -> mx.array:
        y = x
        for layer in self.block[:-2]:
            y = run_conv_norm(layer, y, "silu")
        y = run_conv_norm(self.block[-1], self.block[-2](y), None)
        # Stochastic depth is the identity at inference.
        return x + y if self.use_res else y


def stage_settings(width_mult: float, depth_mult: float) -> list[tuple[float, int, int, int, int, int]]:
    """The seven stages with widths and depths scaled as torchvision scales them."""
    return [
        (e, k, s, make_divisible(i * width_mult), make_divisible(o * width_mult), int(math.ceil(n * depth_mult)))
        for e, k, s, i, o, n in STAGES
    ]


class EfficientNet(nn.Module):
    def __init__(self, config: EfficientNetConfig):
        super().__init__()
        self.config = config
        eps = config.bn_eps
        stages = stage_settings(config.width_mult, config.depth_mult)
        features: list = [conv_norm(config.in_channels, stages[0][3], 3, 2, eps=eps)]
        for e, k, s, inp, out, n in stages:
            features.append([MBConv(e, k, s if b == 0 else 1, inp if b == 0 else out, out, eps) for b in range(n)])
        last_in = stages[-1][4]
        self.last_channel = 4 * last_in
        features.append(conv_norm(last_in, self.last_channel, 1, eps=eps))
        self.features = features
        self.classifier = [{}, nn.Linear(self.last_channel, config.num_classes)]

    def forward_features(self, x: mx.array) -> mx.array:
        x = run_conv_norm(self.features[0], x, "silu")
        for stage in self.features[1:-1]:
            for blk in stage:
                x = blk(x)
        return run_conv_norm(self.features[-1], x, "silu")

    def __call__(self, x: mx.array) -> mx.array:
        return self.classifier[1](global_avg_pool(self.forward_features(x)))


def _timm_rules() -> list[tuple[str, str]]:
    """timm efficientnet names -> torchvision names."""
    rules = timm_stem_head_rules(8) + [
        (r"\.se\.conv_reduce\.", ".se.fc1."),
        (r"\.se\.conv_expand\.", ".se.fc2."),
        (r"^blocks\.(\d+)\.", lambda m: f"features.{int(m.group(1)) + 1}."),
    ]
    # Inside a block: depthwise-separable (stage 0) has no expansion conv, so indices shift by one.
    ds = {"conv_dw": "block.0.0", "bn1": "block.0.1", "se": "block.1", "conv_pw": "block.2.0", "bn2": "block.2.1"}
    ir = {
        "conv_pw": "block.0.0",
        "bn1": "block.0.1",
        "conv_dw": "block.1.0",
        "bn2": "block.1.1",
        "se": "block.2",
        "conv_pwl": "block.3.0",
        "bn3": "block.3.1",
    }
    rules += [(rf"^(features\.1\.\d+)\.{s}\.", rf"\1.{d}.") for s, d in ds.items()]
    rules += [(rf"^(features\.[2-9]\.\d+)\.{s}\.", rf"\1.{d}.") for s, d in ir.items()]
    return rules


def sanitize(weights: dict) -> dict:
    """torchvision or timm EfficientNet state dict -> this model's names."""
    return sanitize_timm(weights, _timm_rules)


def infer_config(weights: dict) -> dict:
    """Class count and input channels from a sanitized checkpoint."""
    return {**head_classes(weights, "classifier.1.weight"), **in_channels_of(weights, "features.0.0.weight")}
