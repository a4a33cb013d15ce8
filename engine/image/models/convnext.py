"""ConvNeXt (Liu et al. 2022) in MLX, NHWC, parameter names as torchvision's.

``features.0`` the 4x4/4 patchify stem (conv with bias, then LayerNorm2d), then
stages ``features.1,3,5,7`` of blocks (``block.0`` 7x7 depthwise conv, ``block.2``
LayerNorm, ``block.3``/``block.5`` the MLP Linears with GELU between, a
per-channel ``layer_scale``) and downsamplers ``features.2,4,6`` (LayerNorm2d,
2x2/2 conv); ``classifier.0`` LayerNorm2d and ``classifier.2`` the Linear head
after global average pooling. LayerNorm2d in NHWC is a LayerNorm over the last
axis. Stochastic depth is the identity at inference. timm's names (``stem``,
``stages.i.blocks.j``, ``gamma``, ``head.fc``) are renamed by :func:`sanitize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.image.models.base import ArchConfig, drop_tracking, head_classes, in_channels_of, rename
from engine.image.models.layers import global_avg_pool, make_conv

EPS = 1e-6


@dataclass(frozen=True)
class ConvNeXtConfig(ArchConfig):
    num_classes: int = 1000
    dims: tuple = (96, 192, 384, 768)
    depths: tuple = (3, 3, 9, 3)
    in_channels: int = 3
    head_eps: float = EPS  # the classifier's LayerNorm2d (Hugging Face uses layer_norm_eps, 1e-12)


@dataclass(frozen=True)
class ConvNeXtSmallConfig(ConvNeXtConfig):
    depths: tuple = (3, 3, 27, 3)


@dataclass(frozen=True)
class ConvNeXtBaseConfig(ConvNeXtConfig):
    dims: tuple = (128, 256, 512, 1024)
    depths: tuple = (3, 3, 27, 3)


@dataclass(frozen=True)
class ConvNeXtLargeConfig(ConvNeXtConfig):
    dims: tuple = (192, 384, 768, 1536)
    depths: tuple = (3, 3, 27, 3)


class CNBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.block = [
            make_conv(dim, dim, 7, groups=dim, bias=True),
            {},
            nn.LayerNorm(dim, eps=EPS),
            nn.Linear(dim, 4 * dim),
            {},
            nn.Linear(4 * dim, dim),
        ]
        self.layer_scale = mx.full((dim,), 1e-6)

    def __call__(self, x: mx.array) -> mx.array:
        y = self.block[2](self.block[0](x))
        y = self.block[5](nn.gelu(self.block[3](y)))
        return x + self.layer_scale * y


class ConvNeXt(nn.Module):
    def __init__(self, config: ConvNeXtConfig):
        super().__init__()
        if len(config.dims) != len(config.depths):
            raise ValueError("dims and depths must have the same length")
        self.config = config
        dims = config.dims
        features: list = [[nn.Conv2d(config.in_channels, dims[0], 4, 4, bias=True), nn.LayerNorm(dims[0], eps=EPS)]]
        for i, (dim, depth) in enumerate(zip(dims, config.depths, strict=True)):
            features.append([CNBlock(dim) for _ in range(depth)])
            if i + 1 < len(dims):
                features.append([nn.LayerNorm(dim, eps=EPS), nn.Conv2d(dim, dims[i + 1], 2, 2, bias=True)])
        self.features = features
        self.classifier = [nn.LayerNorm(dims[-1], eps=config.head_eps), {}, nn.Linear(dims[-1], config.num_classes)]

    def forward_features(self, x: mx.array) -> mx.array:
        conv, norm = self.features[0]
        x = norm(conv(x))
        for i, stage in enumerate(self.features[1:]):
            if i % 2 == 0:
                for blk in stage:
                    x = blk(x)
            else:
                x = stage[1](stage[0](x))
        return x

    def __call__(self, x: mx.array) -> mx.array:
        return self.classifier[2](self.classifier[0](global_avg_pool(self.forward_features(x))))


TIMM_RULES = [
    (r"^head\.norm\.", "classifier.0."),
    (r"^head\.fc\.", "classifier.2."),
    (r"^stem\.0\.", "features.0.0."),
    (r"^stem\.1\.", "features.0.1."),
    (r"^stages\.(\d+)\.downsample\.(\d)\.", lambda m: f"features.{2 * int(m.group(1))}.{m.group(2)}."),
    (r"^stages\.(\d+)\.blocks\.", lambda m: f"features.{2 * int(m.group(1)) + 1}."),
    (r"\.conv_dw\.", ".block.0."),
    (r"\.norm\.", ".block.2."),
    (r"\.mlp\.fc1\.", ".block.3."),
    (r"\.mlp\.fc2\.", ".block.5."),
    (r"\.gamma$", ".layer_scale"),
]


def sanitize(weights: dict) -> dict:
    """torchvision or timm ConvNeXt state dict -> this model's names; layer scales (C, 1, 1) -> (C,)."""
    weights = drop_tracking(weights)
    if "stem.0.weight" in weights:
        weights = rename(weights, TIMM_RULES)
    return {k: (np.reshape(v, (-1,)) if k.endswith("layer_scale") else v) for k, v in weights.items()}


def infer_config(weights: dict) -> dict:
    """Class count, input channels, widths and stage depths from a sanitized checkpoint."""
    cfg = {**head_classes(weights, "classifier.2.weight"), **in_channels_of(weights, "features.0.0.weight")}
    dims, depths = [], []
    s = 1
    while f"features.{s}.0.layer_scale" in weights:
        dims.append(int(weights[f"features.{s}.0.layer_scale"].shape[0]))
        depths.append(len({k.split(".")[2] for k in weights if k.startswith(f"features.{s}.")}))
        s += 2
    if dims:
        cfg.update(dims=tuple(dims), depths=tuple(depths))
    return cfg
