"""The embedded default model: a small CNN for 28x28 grayscale digits.

Regular, depthwise and pointwise convolutions with BatchNorm, and a Linear
head, so every quantized layer type is exercised on a model that trains in
about a minute on a CPU (``resources/train_default.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import mlx.core as mx
import mlx.nn as nn

from engine.image.data.preprocess import Preprocessing
from engine.image.models.layers import ConvBNAct, mean_f32

DEFAULT_PREPROCESSING = Preprocessing(
    input_size=(28, 28),
    channels=1,
    resize="stretch",
    interpolation="bilinear",
    scale="unit",
    mean=(0.1307,),
    std=(0.3081,),
)


@dataclass(frozen=True)
class SmallCNNConfig:
    num_classes: int = 10
    in_channels: int = 1
    widths: tuple[int, ...] = field(default=(16, 32, 64, 128))

    @classmethod
    def from_dict(cls, d: dict) -> SmallCNNConfig:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if "widths" in kwargs:
            kwargs["widths"] = tuple(kwargs["widths"])
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return {"num_classes": self.num_classes, "in_channels": self.in_channels, "widths": list(self.widths)}


class SmallCNN(nn.Module):
    """stem 3x3 -> depthwise 3x3/2 -> pointwise 1x1 -> 3x3/2 -> 3x3/2 -> GAP -> Linear."""

    def __init__(self, config: SmallCNNConfig):
        super().__init__()
        w1, w2, w3, w4 = config.widths
        self.stem = ConvBNAct(config.in_channels, w1, 3)
        self.dw = ConvBNAct(w1, w1, 3, stride=2, depthwise=True)
        self.pw = ConvBNAct(w1, w2, 1)
        self.conv3 = ConvBNAct(w2, w3, 3, stride=2)
        self.conv4 = ConvBNAct(w3, w4, 3, stride=2)
        self.head = nn.Linear(w4, config.num_classes)

    def features(self, x: mx.array) -> mx.array:
        for block in (self.stem, self.dw, self.pw, self.conv3, self.conv4):
            x = block(x)
        return x

    def __call__(self, x: mx.array) -> mx.array:
        return self.head(mean_f32(self.features(x), axis=(1, 2)))


def sanitize(weights: dict) -> dict:
    """Drop checkpoint entries the MLX model has no use for.

    The model's names follow PyTorch's module naming, so a state dict of the
    equivalent ``torch.nn`` model maps one to one; kernel layouts are
    conformed by the importer.
    """
    return {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}


def infer_config(weights: dict) -> dict:
    """Class count, input channels and widths from a (sanitized) checkpoint."""
    cfg = {}
    if "head.weight" in weights:
        cfg["num_classes"] = int(weights["head.weight"].shape[0])
    stem = weights.get("stem.conv.weight")
    if stem is not None and stem.ndim == 4:
        # MLX layout (O, 3, 3, I) or PyTorch layout (O, I, 3, 3).
        cfg["in_channels"] = int(stem.shape[3] if stem.shape[1] == 3 and stem.shape[2] == 3 else stem.shape[1])
    widths = [weights.get(f"{n}.bn.weight") for n in ("stem", "pw", "conv3", "conv4")]
    if all(w is not None for w in widths):
        cfg["widths"] = [int(w.shape[0]) for w in widths]
    return cfg
