"""RegNetX / RegNetY (Radosavovic et al. 2020) in MLX, NHWC, parameter names as torchvision's.

``stem`` (3x3/2 conv, BN, ReLU), ``trunk_output.blockS.blockS-i`` residual
bottlenecks (``f.a`` 1x1, ``f.b`` 3x3 group conv, RegNetY's ``f.se``
squeeze-excitation, ``f.c`` 1x1; ``proj`` on the skip when the shape changes),
``fc`` after global average pooling. The stage widths, depths and group widths
are the config (torchvision derives them from w_0/w_a/w_m; here they are read
off the checkpoint or taken from the named presets).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from engine.image.models.base import ArchConfig, drop_tracking, head_classes, in_channels_of
from engine.image.models.layers import conv_norm, global_avg_pool, run_conv_norm


@dataclass(frozen=True)
class RegNetConfig(ArchConfig):
    """regnet_y_400mf by default."""

    num_classes: int = 1000
    widths: tuple = (48, 104, 208, 440)
    depths: tuple = (1, 3, 6, 6)
    group_width: int = 8
    bottleneck_multiplier: float = 1.0
    se_ratio: float = 0.25  # 0 for RegNetX
    stem_width: int = 32
    in_channels: int = 3


@dataclass(frozen=True)
class RegNetX400MFConfig(RegNetConfig):
    widths: tuple = (32, 64, 160, 400)
    depths: tuple = (1, 2, 7, 12)
    group_width: int = 16
    se_ratio: float = 0.0


@dataclass(frozen=True)
class RegNetY800MFConfig(RegNetConfig):
    widths: tuple = (64, 144, 320, 784)
    depths: tuple = (1, 3, 8, 2)
    group_width: int = 16


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def __call__(self, x: mx.array) -> mx.array:
        s = mx.mean(x, axis=(1, 2), keepdims=True)
        return x * mx.sigmoid(self.fc2(nn.relu(self.fc1(s))))


class ResBottleneckBlock(nn.Module):
    def __init__(self, w_in: int, w_out: int, stride: int, c: RegNetConfig):
        super().__init__()
        w_b = int(round(w_out * c.bottleneck_multiplier))
        groups = w_b // min(c.group_width, w_b)
        if stride != 1 or w_in != w_out:
            self.proj = conv_norm(w_in, w_out, 1, stride)
        f = {"a": conv_norm(w_in, w_b, 1), "b": conv_norm(w_b, w_b, 3, stride, groups=groups)}
        if c.se_ratio:
            f["se"] = SqueezeExcitation(w_b, int(round(c.se_ratio * w_in)))
        f["c"] = conv_norm(w_b, w_out, 1)
        self.f = f

    def __call__(self, x: mx.array) -> mx.array:
        y = run_conv_norm(self.f["b"], run_conv_norm(self.f["a"], x, "relu"), "relu")
        if "se" in self.f:
            y = self.f["se"](y)
        y = run_conv_norm(self.f["c"], y, None)
        skip = run_conv_norm(self.proj, x, None) if "proj" in self else x
        return nn.relu(skip + y)


class RegNet(nn.Module):
    def __init__(self, config: RegNetConfig):
        super().__init__()
        if len(config.widths) != len(config.depths):
            raise ValueError("widths and depths must have the same length")
        self.config = config
        self.stem = conv_norm(config.in_channels, config.stem_width, 3, 2)
        trunk = {}
        w_in = config.stem_width
        for s, (w, d) in enumerate(zip(config.widths, config.depths, strict=True), start=1):
            trunk[f"block{s}"] = {
                f"block{s}-{i}": ResBottleneckBlock(w_in if i == 0 else w, w, 2 if i == 0 else 1, config)
                for i in range(d)
            }
            w_in = w
        self.trunk_output = trunk
        self.fc = nn.Linear(config.widths[-1], config.num_classes)

    def blocks(self) -> list[ResBottleneckBlock]:
        return [blk for stage in self.trunk_output.values() for blk in stage.values()]

    def forward_features(self, x: mx.array) -> mx.array:
        x = run_conv_norm(self.stem, x, "relu")
        for blk in self.blocks():
            x = blk(x)
        return x

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc(global_avg_pool(self.forward_features(x)))


def sanitize(weights: dict) -> dict:
    """A torchvision RegNet state dict -> this model's names (they are the same)."""
    return drop_tracking(weights)


def infer_config(weights: dict) -> dict:
    """Class count, stage widths/depths, group width and SE from a sanitized checkpoint."""
    cfg = {**head_classes(weights, "fc.weight"), **in_channels_of(weights, "stem.0.weight")}
    widths, depths = [], []
    s = 1
    while f"trunk_output.block{s}.block{s}-0.f.c.1.weight" in weights:
        widths.append(int(weights[f"trunk_output.block{s}.block{s}-0.f.c.1.weight"].shape[0]))
        depths.append(len({k.split(".")[2] for k in weights if k.startswith(f"trunk_output.block{s}.")}))
        s += 1
    if not widths:
        return cfg
    cfg.update(widths=tuple(widths), depths=tuple(depths))
    stem = weights.get("stem.1.weight")
    if stem is not None:
        cfg["stem_width"] = int(stem.shape[0])
    b = weights["trunk_output.block1.block1-0.f.b.0.weight"]  # (w_b, w_b/g, 3, 3) or (w_b, 3, 3, w_b/g)
    w_b = int(b.shape[0])
    per_group = int(b.shape[1] if b.shape[2] == b.shape[3] and b.shape[1] != b.shape[2] else b.shape[3])
    cfg["group_width"] = per_group
    cfg["bottleneck_multiplier"] = w_b / widths[0]
    se = weights.get("trunk_output.block1.block1-0.f.se.fc1.weight")
    cfg["se_ratio"] = round(float(se.shape[0]) / cfg.get("stem_width", 32), 4) if se is not None else 0.0
    return cfg
