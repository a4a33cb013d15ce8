"""Config base class and checkpoint helpers shared by the architectures."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from engine.image.data.preprocess import Preprocessing

# ImageNet-style preprocessing of the torchvision classifiers: shorter side to 256, centre crop 224.
IMAGENET_PREPROCESSING = Preprocessing(
    input_size=(224, 224),
    channels=3,
    resize="shorter_side_crop",
    crop_fraction=0.875,
    interpolation="bilinear",
    scale="unit",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)


@dataclass(frozen=True)
class ArchConfig:
    """A frozen config whose ``from_dict`` ignores unknown keys and turns lists back into tuples."""

    @classmethod
    def from_dict(cls, d: dict):
        kwargs = {}
        for f in fields(cls):
            if f.name in d:
                v = d[f.name]
                kwargs[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def drop_tracking(weights: dict) -> dict:
    """Drop BatchNorm's ``num_batches_tracked`` counters and a DataParallel ``module.`` prefix."""
    return {k.removeprefix("module."): v for k, v in weights.items() if not k.endswith("num_batches_tracked")}


def rename(weights: dict, rules: list[tuple[str, str]]) -> dict:
    """Apply regex substitutions (in order) to every key."""
    out = {}
    for k, v in weights.items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def timm_stem_head_rules(head_index: int) -> list[tuple[str, str]]:
    """timm's ``conv_stem/bn1`` ... ``conv_head/bn2/classifier`` -> torchvision's ``features.0``,
    ``features.<head_index>`` and ``classifier.1`` (MobileNetV2, EfficientNet)."""
    return [
        (r"^conv_stem\.", "features.0.0."),
        (r"^bn1\.", "features.0.1."),
        (r"^conv_head\.", f"features.{head_index}.0."),
        (r"^bn2\.", f"features.{head_index}.1."),
        (r"^classifier\.", "classifier.1."),
    ]


def sanitize_timm(weights: dict, timm_rules) -> dict:
    """A torchvision or timm state dict -> torchvision names; timm's is recognised by its ``conv_stem``."""
    weights = drop_tracking(weights)
    if "conv_stem.weight" in weights:
        weights = rename(weights, timm_rules())
    return weights


def head_classes(weights: dict, key: str) -> dict:
    """``{"num_classes": n}`` from the classifier weight ``key`` if present."""
    w = weights.get(key)
    return {"num_classes": int(w.shape[0])} if w is not None and getattr(w, "ndim", 0) == 2 else {}


def in_channels_of(weights: dict, key: str) -> dict:
    """``{"in_channels": c}`` from a stem kernel in PyTorch (O, I, kh, kw) or MLX (O, kh, kw, I) layout."""
    w = weights.get(key)
    if w is None or getattr(w, "ndim", 0) != 4:
        return {}
    _, a, b, c = w.shape
    # A square kernel whose last dim differs from the middle ones is MLX layout.
    return {"in_channels": int(c if a == b and c != a else a)}
