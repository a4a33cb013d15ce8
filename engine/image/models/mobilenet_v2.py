"""MobileNetV2 (Sandler et al. 2018) in MLX, NHWC, parameter names as torchvision's.

``features.0`` is the stem, ``features.1..17`` the inverted residual blocks,
``features.18`` the 1x1 head conv and ``classifier.1`` the Linear head, as in
``torchvision.models.mobilenet_v2``. ``width_mult`` scales every width the way
torchvision does (rounded to multiples of ``round_nearest``). timm's
``mobilenetv2_*`` naming (``conv_stem``, ``blocks.i.j``...) is renamed by
:func:`sanitize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from engine.image.models.base import ArchConfig, head_classes, in_channels_of, sanitize_timm, timm_stem_head_rules
from engine.image.models.layers import conv_norm, global_avg_pool, make_conv, make_divisible, run_conv_norm

# expansion t, output channels c, repeats n, first stride s (Table 2 of the paper).
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


@dataclass(frozen=True)
class MobileNetV2Config(ArchConfig):
    num_classes: int = 1000
    width_mult: float = 1.0
    round_nearest: int = 8
    in_channels: int = 3


class InvertedResidual(nn.Module):
    """[1x1 expand] -> 3x3 depthwise -> 1x1 linear projection, with a skip when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(conv_norm(inp, hidden, 1))
        layers.append(conv_norm(hidden, hidden, 3, stride, groups=hidden))
        layers.append(make_conv(hidden, oup, 1))
        layers.append(nn.BatchNorm(oup))
        self.conv = layers

    def __call__(self, x: mx.array) -> mx.array:
        y = x
        for layer in self.conv[:-2]:
            y = run_conv_norm(layer, y, "relu6")
        y = self.conv[-1](self.conv[-2](y))
        return x + y if self.use_res else y


class MobileNetV2(nn.Module):
    def __init__(self, config: MobileNetV2Config):
        super().__init__()
        self.config = config
        wm, rn = config.width_mult, config.round_nearest
        inp = make_divisible(32 * wm, rn)
        self.last_channel = make_divisible(1280 * max(1.0, wm), rn)
        features: list = [conv_norm(config.in_channels, inp, 3, 2)]
        for t, c, n, s in SETTINGS:
            out = make_divisible(c * wm, rn)
            for i in range(n):
                features.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
                inp = out
        features.append(conv_norm(inp, self.last_channel, 1))
        self.features = features
        # classifier.0 is Dropout in torchvision; an empty slot keeps the Linear at index 1.
        self.classifier = [{}, nn.Linear(self.last_channel, config.num_classes)]

    def forward_features(self, x: mx.array) -> mx.array:
        for layer in self.features:
            x = run_conv_norm(layer, x, "relu6") if isinstance(layer, list) else layer(x)
        return x

    def __call__(self, x: mx.array) -> mx.array:
        return self.classifier[1](global_avg_pool(self.forward_features(x)))


def _timm_rules() -> list[tuple[str, str]]:
    """timm mobilenetv2 names -> torchvision names (``blocks.s.b`` flattened to ``features.k``)."""
    rules = timm_stem_head_rules(18)
    k = 1
    for stage, (t, _, n, _) in enumerate(SETTINGS):
        for b in range(n):
            pre = rf"^blocks\.{stage}\.{b}\."
            if t == 1:  # depthwise-separable block: conv_dw, bn1, conv_pw, bn2
                names = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
            else:
                names = {
                    "conv_pw": "conv.0.0",
                    "bn1": "conv.0.1",
                    "conv_dw": "conv.1.0",
                    "bn2": "conv.1.1",
                    "conv_pwl": "conv.2",
                    "bn3": "conv.3",
                }
            rules += [(pre + src + r"\.", f"features.{k}.{dst}.") for src, dst in names.items()]
            k += 1
    return rules


def sanitize(weights: dict) -> dict:
    """torchvision or timm MobileNetV2 state dict -> this model's names."""
    return sanitize_timm(weights, _timm_rules)


def infer_config(weights: dict) -> dict:
    """Class count, input channels and width multiplier from a sanitized checkpoint."""
    cfg = {**head_classes(weights, "classifier.1.weight"), **in_channels_of(weights, "features.0.0.weight")}
    stem = weights.get("features.0.1.weight")
    if stem is not None:
        # The stem has make_divisible(32 * w) channels; pick the multiplier that reproduces it, the head
        # and the last block's 320 * w (0.35 and 0.5 share the stem's 16 and the head's 1280).
        head = weights.get("features.18.1.weight")
        last = weights.get("features.17.conv.3.weight")
        for wm in (1.0, 0.75, 0.5, 0.35, 1.3, 1.4, 0.25, 1.5, 2.0):
            if (
                make_divisible(32 * wm) == stem.shape[0]
                and (head is None or make_divisible(1280 * max(1.0, wm)) == head.shape[0])
                and (last is None or make_divisible(320 * wm) == last.shape[0])
            ):
                cfg["width_mult"] = wm
                break
    return cfg
