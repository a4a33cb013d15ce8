"""Architecture names -> config class, model class and checkpoint sanitizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlx.nn as nn

from engine.core.errors import UserError
from engine.image.data.preprocess import Preprocessing
from engine.image.models import densenet, efficientnet, graph, mobilenet_v2, resnet, small_cnn, xception
from engine.image.models.base import IMAGENET_PREPROCESSING


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


# Other spellings of the same architectures (timm's names).
ALIASES = {"mobilenetv2_100": "mobilenet_v2", "mobilenetv2": "mobilenet_v2"}


def get(name: str) -> Architecture:
    try:
        return _ARCHS[ALIASES.get(name, name)]
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


def _imagenet(name: str, module, config_cls, model_cls, description: str) -> None:
    register(
        Architecture(
            name=name,
            config_cls=config_cls,
            model_cls=model_cls,
            sanitize=module.sanitize,
            description=description,
            default_preprocessing=IMAGENET_PREPROCESSING,
            infer_config=module.infer_config,
        )
    )


_imagenet(
    "mobilenet_v2",
    mobilenet_v2,
    mobilenet_v2.MobileNetV2Config,
    mobilenet_v2.MobileNetV2,
    "MobileNetV2 (torchvision/timm names; width_mult)",
)
for _depth in (18, 34, 50, 101, 152):
    _imagenet(
        f"resnet{_depth}",
        resnet,
        getattr(resnet, f"ResNet{_depth}Config"),
        resnet.ResNet,
        f"ResNet-{_depth} (torchvision/timm names)",
    )
_imagenet(
    "efficientnet_b0",
    efficientnet,
    efficientnet.EfficientNetConfig,
    efficientnet.EfficientNet,
    "EfficientNet-B0 (torchvision/timm names; width_mult, depth_mult)",
)
for _depth in (121, 161, 169, 201):
    _imagenet(
        f"densenet{_depth}",
        densenet,
        densenet.DenseNetConfig if _depth == 121 else getattr(densenet, f"DenseNet{_depth}Config"),
        densenet.DenseNet,
        f"DenseNet-{_depth} (torchvision/timm names)",
    )
register(
    Architecture(
        name="xception",
        config_cls=xception.XceptionConfig,
        model_cls=xception.Xception,
        sanitize=xception.sanitize,
        description="Xception (keras.applications layer names; Keras .h5 weights)",
        default_preprocessing=xception.XCEPTION_PREPROCESSING,
        infer_config=xception.infer_config,
    )
)
register(
    Architecture(
        name="graph",
        config_cls=graph.GraphConfig,
        model_cls=graph.GraphModel,
        sanitize=graph.sanitize,
        description="A Keras or ONNX graph rebuilt in MLX (the graph is stored in the bundle)",
        default_preprocessing=graph.GRAPH_PREPROCESSING,
        infer_config=graph.infer_config,
    )
)
