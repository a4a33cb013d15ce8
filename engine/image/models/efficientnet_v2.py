"""EfficientNetV2 S/M/L (Tan & Le 2021) in MLX, NHWC, parameter names as torchvision's.

``features.0`` stem, ``features.1..n`` the stages: fused MBConv (a kxk conv
doing the expansion, then a 1x1 projection; ``block.0``/``block.1``) in the early
stages, MBConv with squeeze-excitation (as EfficientNet-B0's, shared from
``efficientnet.py``) after; ``features.n+1`` the 1x1 head conv and
``classifier.1`` the Linear head. BatchNorm eps 1e-3. Stochastic depth is the
identity at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from engine.image.models.base import ArchConfig, drop_tracking, head_classes, in_channels_of
from engine.image.models.efficientnet import MBConv
from engine.image.models.layers import conv_norm, global_avg_pool, make_divisible, run_conv_norm

EPS = 1e-3
# block ("fused" or "mb"), expand ratio, kernel, stride, in, out, layers (torchvision's _efficientnet_conf).
STAGES = {
    "s": (
        ("fused", 1, 3, 1, 24, 24, 2),
        ("fused", 4, 3, 2, 24, 48, 4),
        ("fused", 4, 3, 2, 48, 64, 4),
        ("mb", 4, 3, 2, 64, 128, 6),
        ("mb", 6, 3, 1, 128, 160, 9),
        ("mb", 6, 3, 2, 160, 256, 15),
    ),
    "m": (
        ("fused", 1, 3, 1, 24, 24, 3),
        ("fused", 4, 3, 2, 24, 48, 5),
        ("fused", 4, 3, 2, 48, 80, 5),
        ("mb", 4, 3, 2, 80, 160, 7),
        ("mb", 6, 3, 1, 160, 176, 14),
        ("mb", 6, 3, 2, 176, 304, 18),
        ("mb", 6, 3, 1, 304, 512, 5),
    ),
    "l": (
        ("fused", 1, 3, 1, 32, 32, 4),
        ("fused", 4, 3, 2, 32, 64, 7),
        ("fused", 4, 3, 2, 64, 96, 7),
        ("mb", 4, 3, 2, 96, 192, 10),
        ("mb", 6, 3, 1, 192, 224, 19),
        ("mb", 6, 3, 2, 224, 384, 25),
        ("mb", 6, 3, 1, 384, 640, 7),
    ),
}


@dataclass(frozen=True)
class EfficientNetV2Config(ArchConfig):
    variant: str = "s"
    num_classes: int = 1000
    last_channel: int = 1280
    in_channels: int = 3


@dataclass(frozen=True)
class EfficientNetV2MConfig(EfficientNetV2Config):
    variant: str = "m"


@dataclass(frozen=True)
class EfficientNetV2LConfig(EfficientNetV2Config):
    variant: str = "l"


class FusedMBConv(nn.Module):
    """kxk expansion conv (SiLU) -> 1x1 projection, or one kxk conv when there is no expansion."""

    def __init__(self, expand: int, kernel: int, stride: int, inp: int, out: int):
        super().__init__()
        self.use_res = stride == 1 and inp == out
        hidden = make_divisible(inp * expand)
        if hidden != inp:
            self.block = [conv_norm(inp, hidden, kernel, stride, eps=EPS), conv_norm(hidden, out, 1, eps=EPS)]
        else:
            self.block = [conv_norm(inp, out, kernel, stride, eps=EPS)]

    def __call__(self, x: mx.array) -> mx.array:
        y = run_conv_norm(self.block[0], x, "silu")
        if len(self.block) == 2:
            y = run_conv_norm(self.block[1], y, None)
        return x + y if self.use_res else y


class EfficientNetV2(nn.Module):
    def __init__(self, config: EfficientNetV2Config):
        super().__init__()
        if config.variant not in STAGES:
            raise ValueError(f"unknown EfficientNetV2 variant '{config.variant}' (s, m or l)")
        self.config = config
        stages = STAGES[config.variant]
        features: list = [conv_norm(config.in_channels, stages[0][4], 3, 2, eps=EPS)]
        for kind, e, k, s, inp, out, n in stages:
            block = FusedMBConv if kind == "fused" else (lambda *a: MBConv(*a, EPS))
            features.append([block(e, k, s if b == 0 else 1, inp if b == 0 else out, out) for b in range(n)])
        features.append(conv_norm(stages[-1][5], config.last_channel, 1, eps=EPS))
        self.features = features
        self.classifier = [{}, nn.Linear(config.last_channel, config.num_classes)]

    def forward_features(self, x: mx.array) -> mx.array:
        x = run_conv_norm(self.features[0], x, "silu")
        for stage in self.features[1:-1]:
            for blk in stage:
                x = blk(x)
        return run_conv_norm(self.features[-1], x, "silu")

    def __call__(self, x: mx.array) -> mx.array:
        return self.classifier[1](global_avg_pool(self.forward_features(x)))


def sanitize(weights: dict) -> dict:
    """A torchvision EfficientNetV2 state dict -> this model's names (they are the same)."""
    return drop_tracking(weights)


def infer_config(weights: dict) -> dict:
    """Class count, input channels and S/M/L (stage count and first width) from a sanitized checkpoint."""
    cfg = {**head_classes(weights, "classifier.1.weight"), **in_channels_of(weights, "features.0.0.weight")}
    stem = weights.get("features.0.1.weight")
    n_stages = len({k.split(".")[1] for k in weights if k.startswith("features.")}) - 2
    for variant, stages in STAGES.items():
        if stem is not None and stem.shape[0] == stages[0][4] and n_stages == len(stages):
            cfg["variant"] = variant
            head = weights.get(f"features.{n_stages + 1}.1.weight")
            if head is not None:
                cfg["last_channel"] = int(head.shape[0])
            break
    return cfg
