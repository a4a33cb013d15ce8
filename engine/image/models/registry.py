"""Architecture names -> config class, model class and checkpoint sanitizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlx.nn as nn

from engine.core.errors import UserError
from engine.image.data.preprocess import Preprocessing
from engine.image.models import (
    convnext,
    densenet,
    efficientnet,
    efficientnet_v2,
    graph,
    mobilenet_v2,
    mobilenet_v3,
    regnet,
    resnet,
    small_cnn,
    swin,
    vit,
    xception,
)
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
ALIASES = {
    "mobilenetv2_100": "mobilenet_v2",
    "mobilenetv2": "mobilenet_v2",
    "vit_small_patch16_224": "vit_s_16",
    "vit_base_patch16_224": "vit_b_16",
    "deit_tiny_patch16_224": "deit_tiny",
    "deit_small_patch16_224": "deit_small",
    "deit_base_patch16_224": "deit_base",
    "convnext_tiny.fb_in1k": "convnext_tiny",
}


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

# The modern families (issue 18): torchvision builder names; ViT-S/16 and DeiT are timm's names (aliases above).
for _name, _module, _cfg, _cls, _desc in (
    ("mobilenet_v3_large", mobilenet_v3, mobilenet_v3.MobileNetV3Config, mobilenet_v3.MobileNetV3, "MobileNetV3-Large"),
    (
        "mobilenet_v3_small",
        mobilenet_v3,
        mobilenet_v3.MobileNetV3SmallConfig,
        mobilenet_v3.MobileNetV3,
        "MobileNetV3-Small",
    ),
    (
        "efficientnet_v2_s",
        efficientnet_v2,
        efficientnet_v2.EfficientNetV2Config,
        efficientnet_v2.EfficientNetV2,
        "EfficientNetV2-S",
    ),
    (
        "efficientnet_v2_m",
        efficientnet_v2,
        efficientnet_v2.EfficientNetV2MConfig,
        efficientnet_v2.EfficientNetV2,
        "EfficientNetV2-M",
    ),
    (
        "efficientnet_v2_l",
        efficientnet_v2,
        efficientnet_v2.EfficientNetV2LConfig,
        efficientnet_v2.EfficientNetV2,
        "EfficientNetV2-L",
    ),
    ("convnext_tiny", convnext, convnext.ConvNeXtConfig, convnext.ConvNeXt, "ConvNeXt-T"),
    ("convnext_small", convnext, convnext.ConvNeXtSmallConfig, convnext.ConvNeXt, "ConvNeXt-S"),
    ("convnext_base", convnext, convnext.ConvNeXtBaseConfig, convnext.ConvNeXt, "ConvNeXt-B"),
    ("convnext_large", convnext, convnext.ConvNeXtLargeConfig, convnext.ConvNeXt, "ConvNeXt-L"),
    (
        "regnet_y_400mf",
        regnet,
        regnet.RegNetConfig,
        regnet.RegNet,
        "RegNetY-400MF (any RegNet: widths read off the checkpoint)",
    ),
    ("regnet_y_800mf", regnet, regnet.RegNetY800MFConfig, regnet.RegNet, "RegNetY-800MF"),
    ("regnet_x_400mf", regnet, regnet.RegNetX400MFConfig, regnet.RegNet, "RegNetX-400MF"),
    ("vit_b_16", vit, vit.ViTConfig, vit.VisionTransformer, "ViT-B/16"),
    ("vit_b_32", vit, vit.ViTB32Config, vit.VisionTransformer, "ViT-B/32"),
    ("vit_l_16", vit, vit.ViTL16Config, vit.VisionTransformer, "ViT-L/16"),
    ("vit_s_16", vit, vit.ViTS16Config, vit.VisionTransformer, "ViT-S/16 (timm vit_small_patch16_224)"),
    ("deit_tiny", vit, vit.DeiTTinyConfig, vit.VisionTransformer, "DeiT-Ti/16 (timm deit_tiny_patch16_224)"),
    ("deit_small", vit, vit.ViTS16Config, vit.VisionTransformer, "DeiT-S/16 (timm deit_small_patch16_224)"),
    ("deit_base", vit, vit.ViTConfig, vit.VisionTransformer, "DeiT-B/16 (timm deit_base_patch16_224)"),
    ("swin_t", swin, swin.SwinConfig, swin.SwinTransformer, "Swin-T (V1)"),
    ("swin_s", swin, swin.SwinSConfig, swin.SwinTransformer, "Swin-S (V1)"),
    ("swin_b", swin, swin.SwinBConfig, swin.SwinTransformer, "Swin-B (V1)"),
):
    _imagenet(_name, _module, _cfg, _cls, f"{_desc} (torchvision names)")
