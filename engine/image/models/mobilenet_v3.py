"""MobileNetV3 large/small (Howard et al. 2019) in MLX, NHWC, parameter names as torchvision's.

``features.0`` stem (hardswish), ``features.1..n`` inverted residual blocks
(``block.k``: [1x1 expand] -> kxk depthwise -> [squeeze-excite ``fc1``/``fc2``,
hardsigmoid gate] -> 1x1 project), ``features.n+1`` the 1x1 head conv,
``classifier.0`` Linear -> hardswish -> (dropout) -> ``classifier.3`` Linear,
as ``torchvision.models.mobilenet_v3_large``/``_small``. BatchNorm eps 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from engine.image.models.base import ArchConfig, drop_tracking, head_classes, in_channels_of
from engine.image.models.layers import conv_norm, global_avg_pool, make_divisible, run_conv_norm

# in, kernel, expanded, out, squeeze-excite, activation, stride (torchvision's bneck_conf tables).
LARGE = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)
SMALL = (
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
)
EPS = 1e-3


@dataclass(frozen=True)
class MobileNetV3Config(ArchConfig):
    variant: str = "large"  # "large" or "small"
    num_classes: int = 1000
    width_mult: float = 1.0
    in_channels: int = 3


@dataclass(frozen=True)
class MobileNetV3SmallConfig(MobileNetV3Config):
    variant: str = "small"


def hardsigmoid(x: mx.array) -> mx.array:
    return mx.clip(x + 3.0, 0.0, 6.0) / 6.0


def _act(x: mx.array, kind: str) -> mx.array:
    return nn.hardswish(x) if kind == "HS" else nn.relu(x)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation with ReLU inside and a hardsigmoid gate."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def __call__(self, x: mx.array) -> mx.array:
        s = mx.mean(x, axis=(1, 2), keepdims=True)
        return x * hardsigmoid(self.fc2(nn.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, kernel: int, expanded: int, out: int, use_se: bool, act: str, stride: int):
        super().__init__()
        self.act = act
        self.use_res = stride == 1 and inp == out
        layers: list = []
        if expanded != inp:
            layers.append(conv_norm(inp, expanded, 1, eps=EPS))
        layers.append(conv_norm(expanded, expanded, kernel, stride, groups=expanded, eps=EPS))
        # By index, not isinstance: Grad-CAM wraps every module while it runs.
        self.se_index = len(layers) if use_se else -1
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4, 8)))
        layers.append(conv_norm(expanded, out, 1, eps=EPS))
        self.block = layers

    def __call__(self, x: mx.array) -> mx.array:
        y = x
        for i, layer in enumerate(self.block[:-1]):
            y = layer(y) if i == self.se_index else _act(run_conv_norm(layer, y, None), self.act)
        y = run_conv_norm(self.block[-1], y, None)
        return x + y if self.use_res else y


def block_settings(variant: str, width_mult: float) -> tuple[list[tuple], int]:
    """The scaled block table and the classifier's hidden width, as torchvision computes them."""
    if variant not in ("large", "small"):
        raise ValueError(f"unknown MobileNetV3 variant '{variant}' (large or small)")
    table = LARGE if variant == "large" else SMALL
    scale = lambda c: make_divisible(c * width_mult, 8)  # noqa: E731
    rows = [(scale(i), k, scale(e), scale(o), se, a, s) for i, k, e, o, se, a, s in table]
    return rows, scale(1280 if variant == "large" else 1024)


class MobileNetV3(nn.Module):
    def __init__(self, config: MobileNetV3Config):
        super().__init__()
        self.config = config
        rows, hidden = block_settings(config.variant, config.width_mult)
        features: list = [conv_norm(config.in_channels, rows[0][0], 3, 2, eps=EPS)]
        features += [InvertedResidual(*row) for row in rows]
        last_in = rows[-1][3]
        features.append(conv_norm(last_in, 6 * last_in, 1, eps=EPS))
        self.features = features
        self.classifier = [nn.Linear(6 * last_in, hidden), {}, {}, nn.Linear(hidden, config.num_classes)]

    def forward_features(self, x: mx.array) -> mx.array:
        x = nn.hardswish(run_conv_norm(self.features[0], x, None))
        for blk in self.features[1:-1]:
            x = blk(x)
        return nn.hardswish(run_conv_norm(self.features[-1], x, None))

    def __call__(self, x: mx.array) -> mx.array:
        x = nn.hardswish(self.classifier[0](global_avg_pool(self.forward_features(x))))
        return self.classifier[3](x)  # classifier.2 is Dropout: the identity at inference


def sanitize(weights: dict) -> dict:
    """A torchvision MobileNetV3 state dict -> this model's names (they are the same)."""
    return drop_tracking(weights)


def infer_config(weights: dict) -> dict:
    """Class count, input channels and large/small (block count) from a sanitized checkpoint."""
    cfg = {**head_classes(weights, "classifier.3.weight"), **in_channels_of(weights, "features.0.0.weight")}
    blocks = {int(k.split(".")[1]) for k in weights if k.startswith("features.")}
    if blocks:
        cfg["variant"] = "small" if max(blocks) == len(SMALL) + 1 else "large"
        stem = weights.get("features.0.1.weight")
        rows = LARGE if cfg["variant"] == "large" else SMALL
        for wm in (1.0, 0.75, 0.5, 1.25, 0.35):
            if stem is not None and make_divisible(rows[0][0] * wm, 8) == stem.shape[0]:
                last = weights.get(f"features.{len(rows) + 1}.1.weight")
                if last is None or 6 * make_divisible(rows[-1][3] * wm, 8) == last.shape[0]:
                    cfg["width_mult"] = wm
                    break
    return cfg
