"""Xception (Chollet 2017) in MLX, NHWC, parameter names from keras.applications' layer names.

Keras is the reference: ``block1_conv1`` ... ``block14_sepconv2_bn`` as Keras names
them, separable convs split into ``.depthwise`` and ``.pointwise``, BatchNorm eps
1e-3, TF "same" padding for the strided max pools. The four residual 1x1 convs
Keras leaves unnamed (``conv2d``, ``conv2d_1``...) are ``block{2,3,4,13}_residual``
here; :func:`sanitize` maps a Keras HDF5 weights file (layer/variable names, the
format of the keras.applications downloads and of ``model.save('x.h5')``) onto them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.image.data.preprocess import Preprocessing
from engine.image.models.base import ArchConfig, head_classes
from engine.image.models.layers import DepthwiseConv2d, global_avg_pool, pool2d, tf_same_pads

# keras.applications.xception.preprocess_input: [-1, 1]; its native size is 299.
XCEPTION_PREPROCESSING = Preprocessing(
    input_size=(299, 299), channels=3, resize="shorter_side_crop", crop_fraction=0.875, scale="symmetric"
)
EPS = 1e-3
RESIDUALS = {2: (64, 128), 3: (128, 256), 4: (256, 728), 13: (728, 1024)}


@dataclass(frozen=True)
class XceptionConfig(ArchConfig):
    num_classes: int = 1000
    in_channels: int = 3


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (3x3 'same', no bias): depthwise then pointwise."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = DepthwiseConv2d(cin, 3, 1, 1)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.pointwise(self.depthwise(x))


def _max_pool_same(x: mx.array) -> mx.array:
    (t, b), (left, r) = (tf_same_pads(x.shape[i], 3, 2) for i in (1, 2))
    return pool2d(x, "max", 3, 2, (t, b, left, r))


class Xception(nn.Module):
    def __init__(self, config: XceptionConfig):
        super().__init__()
        self.config = config
        self.block1_conv1 = nn.Conv2d(config.in_channels, 32, 3, 2, 0, bias=False)
        self.block1_conv1_bn = nn.BatchNorm(32, eps=EPS)
        self.block1_conv2 = nn.Conv2d(32, 64, 3, 1, 0, bias=False)
        self.block1_conv2_bn = nn.BatchNorm(64, eps=EPS)
        for n, (cin, cout) in RESIDUALS.items():
            setattr(self, f"block{n}_residual", nn.Conv2d(cin, cout, 1, 2, 0, bias=False))
            setattr(self, f"block{n}_residual_bn", nn.BatchNorm(cout, eps=EPS))
        for n, (cin, cout) in RESIDUALS.items():
            mid = 728 if n == 13 else cout
            self._sep(f"block{n}_sepconv1", cin, mid)
            self._sep(f"block{n}_sepconv2", mid, cout)
        for n in range(5, 13):
            for k in (1, 2, 3):
                self._sep(f"block{n}_sepconv{k}", 728, 728)
        self._sep("block14_sepconv1", 1024, 1536)
        self._sep("block14_sepconv2", 1536, 2048)
        self.predictions = nn.Linear(2048, config.num_classes)

    def _sep(self, name: str, cin: int, cout: int) -> None:
        setattr(self, name, SeparableConv(cin, cout))
        setattr(self, f"{name}_bn", nn.BatchNorm(cout, eps=EPS))

    def _sep_bn(self, name: str, x: mx.array) -> mx.array:
        return self[f"{name}_bn"](self[name](x))

    def forward_features(self, x: mx.array) -> mx.array:
        x = nn.relu(self.block1_conv1_bn(self.block1_conv1(x)))
        x = nn.relu(self.block1_conv2_bn(self.block1_conv2(x)))
        for n in (2, 3, 4, 13):
            if n == 13:
                for m in range(5, 13):  # the middle flow comes before block 13
                    y = x
                    for k in (1, 2, 3):
                        y = self._sep_bn(f"block{m}_sepconv{k}", nn.relu(y))
                    x = x + y
            residual = self[f"block{n}_residual_bn"](self[f"block{n}_residual"](x))
            y = x if n == 2 else nn.relu(x)
            y = nn.relu(self._sep_bn(f"block{n}_sepconv1", y))
            y = self._sep_bn(f"block{n}_sepconv2", y)
            x = _max_pool_same(y) + residual
        x = nn.relu(self._sep_bn("block14_sepconv1", x))
        return nn.relu(self._sep_bn("block14_sepconv2", x))

    def __call__(self, x: mx.array) -> mx.array:
        return self.predictions(global_avg_pool(self.forward_features(x)))


KERAS_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def sanitize(weights: dict) -> dict:
    """Keras HDF5 names (``layer/var``) -> this model's, kernels in MLX layout; MLX names pass through."""
    if not any("/" in k for k in weights):
        return dict(weights)
    layers: dict[str, dict] = {}
    for key, value in weights.items():
        parts = key.split("/")
        layers.setdefault(parts[-2], {})[parts[-1]] = np.asarray(value)
    out = {}
    # Keras leaves the residual convs and their BatchNorms unnamed; their widths tell them apart.
    unnamed = {n: v for n, v in layers.items() if not n.startswith("block")}
    residual_convs = {v["kernel"].shape[-1]: n for n, v in unnamed.items() if "kernel" in v and v["kernel"].ndim == 4}
    residual_bns = {v["gamma"].shape[0]: n for n, v in unnamed.items() if "gamma" in v}
    rename = {}
    for n, (_, cout) in RESIDUALS.items():
        for table, suffix in ((residual_convs, ""), (residual_bns, "_bn")):
            if cout in table:
                rename[table[cout]] = f"block{n}_residual{suffix}"
    dense = [n for n, v in layers.items() if "kernel" in v and v["kernel"].ndim == 2]
    if len(dense) == 1:
        rename[dense[0]] = "predictions"
    for layer, vars_ in layers.items():
        name = rename.get(layer, layer)
        if not re.match(r"^(block\d+_|predictions$)", name):
            continue
        for var, v in vars_.items():
            if var == "depthwise_kernel":
                out[f"{name}.depthwise.weight"] = v.transpose(2, 0, 1, 3)
            elif var == "pointwise_kernel":
                out[f"{name}.pointwise.weight"] = v.transpose(3, 0, 1, 2)
            elif var == "kernel":
                out[f"{name}.weight"] = v.transpose(3, 0, 1, 2) if v.ndim == 4 else v.T
            elif var in KERAS_BN:
                out[f"{name}.{KERAS_BN[var]}"] = v
            elif var == "bias":
                out[f"{name}.bias"] = v
    return out


def infer_config(weights: dict) -> dict:
    return head_classes(weights, "predictions.weight")
