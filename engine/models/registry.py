"""Architecture names -> config class, model class and checkpoint sanitizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlx.nn as nn

from engine.data.preprocess import Preprocessing
from engine.errors import UserError
from engine.models import small_cnn


@dataclass(frozen=True)
class Architecture:
    name: str
    config_cls: type
    model_cls: type
    sanitize: Callable[[dict], dict]
    description: str
    default_preprocessing: Preprocessing
    # Reads config values (num_classes, channels...) off a sanitized checkpoint.
    infer_config: Callable[[dict], dict] | None = None

    def build(self, config: dict) -> nn.Module:
        return self.model_cls(self.config_cls.from_dict(config))

    def default_config(self, **overrides) -> dict:
        return self.config_cls.from_dict(overrides).to_dict()


_ARCHS: dict[str, Architecture] = {}


def register(arch: Architecture) -> None:
    _ARCHS[arch.name] = arch


def get(name: str) -> Architecture:
    try:
        return _ARCHS[name]
    except KeyError:
        known = ", ".join(sorted(_ARCHS))
        raise UserError(f"unknown architecture '{name}' (known: {known})") from None


def names() -> list[str]:
    return sorted(_ARCHS)


register(
    Architecture(
        name="small_cnn",
        config_cls=small_cnn.SmallCNNConfig,
        model_cls=small_cnn.SmallCNN,
        sanitize=small_cnn.sanitize,
        description="Small CNN for 28x28 digits (conv, depthwise, pointwise, BatchNorm, Linear head)",
        default_preprocessing=small_cnn.DEFAULT_PREPROCESSING,
        infer_config=small_cnn.infer_config,
    )
)
