"""Hugging Face ``transformers`` image classifiers (a ``save_pretrained`` folder) as bundles.

A folder with ``config.json``, ``model.safetensors`` (or ``pytorch_model.bin``) and
``preprocessor_config.json`` of a ``ViTForImageClassification``,
``DeiTForImageClassification``, ``ConvNextForImageClassification``,
``SwinForImageClassification`` or ``ResNetForImageClassification``: the tensors are
renamed onto the zoo's ViT, ConvNeXt, Swin and ResNet (separate query/key/value
Linears packed into one), the config
read from ``config.json``, the labels from ``id2label`` and the preprocessing from
``preprocessor_config.json``. Other model types are refused by name.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.data.preprocess import Preprocessing
from engine.image.models.base import IMAGENET_PREPROCESSING

if TYPE_CHECKING:
    from engine.image.bundle import ModelBundle

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# model_type -> the zoo architecture it maps onto.
SUPPORTED = {
    "vit": "vit_b_16",
    "deit": "deit_base",
    "convnext": "convnext_tiny",
    "swin": "swin_t",
    "resnet": "resnet50",
}
# Hugging Face ResNet widths the zoo's ResNet (torchvision's) has, per block type.
RESNET_WIDTHS = {"basic": [64, 128, 256, 512], "bottleneck": [256, 512, 1024, 2048]}
REFUSED = {
    "DeiTForImageClassificationWithTeacher": "the distilled DeiT head (distillation_classifier)",
    "convnextv2": "ConvNeXt V2 (global response norm)",
    "swinv2": "Swin V2 (cosine attention, log-spaced position bias)",
}
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def is_hf_folder(path: str | Path) -> bool:
    """A directory whose ``config.json`` has transformers' ``model_type`` (a bundle's has none)."""
    p = Path(path) / "config.json"
    if not p.is_file():
        return False
    try:
        return "model_type" in json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError):
        return False


def weight_files(folder: Path) -> list[Path]:
    """The folder's weight file (for the memory guard); empty when there is none."""
    return [folder / n for n in WEIGHT_FILES if (folder / n).is_file()][:1]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"not a readable JSON file ({exc})", path) from None
    if not isinstance(data, dict):
        raise UserError("expected a JSON object", path)
    return data


def _pack_qkv(w: dict, prefix: str, target: str) -> None:
    """``prefix.query/key/value.{weight,bias}`` -> ``target.{weight,bias}`` (q, k, v stacked on the output axis)."""
    for leaf in ("weight", "bias"):
        names = [f"{prefix}.{p}.{leaf}" for p in ("query", "key", "value")]
        if all(n in w for n in names):
            w[f"{target}.{leaf}"] = np.concatenate([w.pop(n) for n in names], axis=0)


def vit_weights(hf: dict, prefix: str) -> dict:
    """``vit.*``/``deit.*`` names -> the zoo ViT's."""
    w = {k: v for k, v in hf.items() if not k.startswith(f"{prefix}.pooler.")}
    n_layers = len({k.split(".")[3] for k in w if k.startswith(f"{prefix}.encoder.layer.")})
    for i in range(n_layers):
        _pack_qkv(
            w,
            f"{prefix}.encoder.layer.{i}.attention.attention",
            f"encoder.layers.encoder_layer_{i}.self_attention.in_proj",
        )
    rules = [
        (rf"^{prefix}\.embeddings\.cls_token$", "class_token"),
        (rf"^{prefix}\.embeddings\.distillation_token$", "dist_token"),
        (rf"^{prefix}\.embeddings\.position_embeddings$", "encoder.pos_embedding"),
        (rf"^{prefix}\.embeddings\.patch_embeddings\.projection\.", "conv_proj."),
        (rf"^{prefix}\.encoder\.layer\.(\d+)\.", r"encoder.layers.encoder_layer_\1."),
        (r"\.layernorm_before\.", ".ln_1."),
        (r"\.layernorm_after\.", ".ln_2."),
        (r"\.attention\.output\.dense\.", ".self_attention.out_proj."),
        (r"\.intermediate\.dense\.", ".mlp.0."),
        (r"\.output\.dense\.", ".mlp.3."),
        (rf"^{prefix}\.layernorm\.", "encoder.ln."),
        (r"^classifier\.", "heads.head."),
    ]
    return _rename(w, rules)


def convnext_weights(hf: dict) -> dict:
    rules = [
        (r"^classifier\.", "classifier.2."),  # first: the final norm becomes classifier.0 below
        (r"^convnext\.embeddings\.patch_embeddings\.", "features.0.0."),
        (r"^convnext\.embeddings\.layernorm\.", "features.0.1."),
        (
            r"^convnext\.encoder\.stages\.(\d+)\.downsampling_layer\.(\d)\.",
            lambda m: f"features.{2 * int(m.group(1))}.{m.group(2)}.",
        ),
        (r"^convnext\.encoder\.stages\.(\d+)\.layers\.", lambda m: f"features.{2 * int(m.group(1)) + 1}."),
        (r"\.dwconv\.", ".block.0."),
        (r"^(features\.\d+\.\d+)\.layernorm\.", r"\1.block.2."),
        (r"\.pwconv1\.", ".block.3."),
        (r"\.pwconv2\.", ".block.5."),
        (r"\.layer_scale_parameter$", ".layer_scale"),
        (r"^convnext\.layernorm\.", "classifier.0."),
    ]
    return _rename(hf, rules)


def swin_weights(hf: dict) -> dict:
    w = {k: v for k, v in hf.items() if not k.endswith("relative_position_index")}
    for key in [k for k in w if k.endswith(".attention.self.query.weight")]:
        prefix = key.removesuffix(".query.weight")
        _pack_qkv(w, prefix, prefix.removesuffix(".attention.self") + ".attn.qkv")
    rules = [
        (r"^swin\.embeddings\.patch_embeddings\.projection\.", "features.0.0."),
        (r"^swin\.embeddings\.norm\.", "features.0.2."),
        (
            r"^swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.",
            lambda m: f"features.{2 * int(m.group(1)) + 1}.{m.group(2)}.",
        ),
        (r"^swin\.encoder\.layers\.(\d+)\.downsample\.", lambda m: f"features.{2 * int(m.group(1)) + 2}."),
        (r"\.attention\.self\.relative_position_bias_table$", ".attn.relative_position_bias_table"),
        (r"\.layernorm_before\.", ".norm1."),
        (r"\.layernorm_after\.", ".norm2."),
        (r"\.attention\.output\.dense\.", ".attn.proj."),
        (r"\.intermediate\.dense\.", ".mlp.0."),
        (r"\.output\.dense\.", ".mlp.3."),
        (r"^swin\.layernorm\.", "norm."),
        (r"^classifier\.", "head."),
    ]
    return _rename(w, rules)


def resnet_weights(hf: dict) -> dict:
    """``resnet.*`` (ResNetForImageClassification) names -> torchvision's."""
    rules = [
        (r"^resnet\.embedder\.embedder\.convolution\.", "conv1."),
        (r"^resnet\.embedder\.embedder\.normalization\.", "bn1."),
        (r"^resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}.{m.group(2)}."),
        (r"\.shortcut\.convolution\.", ".downsample.0."),
        (r"\.shortcut\.normalization\.", ".downsample.1."),
        (r"\.layer\.(\d)\.convolution\.", lambda m: f".conv{int(m.group(1)) + 1}."),
        (r"\.layer\.(\d)\.normalization\.", lambda m: f".bn{int(m.group(1)) + 1}."),
        (r"^classifier\.1\.", "fc."),
    ]
    return _rename({k: v for k, v in hf.items() if not k.endswith("num_batches_tracked")}, rules)


def _rename(weights: dict, rules) -> dict:
    out = {}
    for k, v in weights.items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def _arch_config(model_type: str, cfg: dict, num_classes: int, folder: Path) -> dict:
    """The zoo config of one Hugging Face config.json."""
    get = cfg.get
    if model_type in ("vit", "deit"):
        if not get("qkv_bias", True):
            raise UserError(
                f"unsupported {model_type} variant: attention without q/k/v biases (qkv_bias false)", folder
            )
        return {
            "num_classes": num_classes,
            "image_size": int(get("image_size", 224)),
            "patch_size": int(get("patch_size", 16)),
            "num_layers": int(get("num_hidden_layers", 12)),
            "num_heads": int(get("num_attention_heads", 12)),
            "hidden_dim": int(get("hidden_size", 768)),
            "mlp_dim": int(get("intermediate_size", 3072)),
            "in_channels": int(get("num_channels", 3)),
            "eps": float(get("layer_norm_eps", 1e-12)),
            "dist_token": model_type == "deit",
        }
    if model_type == "resnet":
        block = str(get("layer_type", "bottleneck"))
        widths = list(get("hidden_sizes", RESNET_WIDTHS.get(block, [])))
        if block not in RESNET_WIDTHS or widths != RESNET_WIDTHS[block] or int(get("embedding_size", 64)) != 64:
            raise UserError(
                f"unsupported ResNet variant: {block} blocks of widths {widths} (only torchvision's "
                f"{RESNET_WIDTHS['basic']} basic or {RESNET_WIDTHS['bottleneck']} bottleneck, 64-wide stem)",
                folder,
            )
        if get("downsample_in_bottleneck") or get("downsample_in_first_stage"):
            raise UserError("unsupported ResNet variant: stride on the 1x1 conv (downsample_in_bottleneck)", folder)
        return {
            "num_classes": num_classes,
            "block": block,
            "layers": tuple(get("depths", (3, 4, 6, 3))),
            "in_channels": int(get("num_channels", 3)),
        }
    if model_type == "convnext":
        if int(get("patch_size", 4)) != 4:
            raise UserError(f"unsupported ConvNeXt variant: patch size {get('patch_size')} (only 4)", folder)
        return {
            "num_classes": num_classes,
            "dims": tuple(get("hidden_sizes", (96, 192, 384, 768))),
            "depths": tuple(get("depths", (3, 3, 9, 3))),
            "in_channels": int(get("num_channels", 3)),
            "head_eps": float(get("layer_norm_eps", 1e-12)),
        }
    # swin
    if get("use_absolute_embeddings"):
        raise UserError("unsupported Swin variant: absolute position embeddings (use_absolute_embeddings)", folder)
    ws, patch, size = int(get("window_size", 7)), int(get("patch_size", 4)), int(get("image_size", 224))
    depths = tuple(get("depths", (2, 2, 6, 2)))
    # transformers shrinks the window to a smaller map (torchvision pads it): the two agree only without that.
    smallest = size // patch // 2 ** (len(depths) - 1)
    if smallest < ws:
        raise UserError(
            f"unsupported Swin variant: a {smallest}x{smallest} last stage under a {ws}x{ws} window "
            f"(image_size {size}); transformers shrinks the window there",
            folder,
        )
    return {
        "num_classes": num_classes,
        "patch_size": patch,
        "embed_dim": int(get("embed_dim", 96)),
        "depths": depths,
        "num_heads": tuple(get("num_heads", (3, 6, 12, 24))),
        "window_size": ws,
        "mlp_ratio": float(get("mlp_ratio", 4.0)),
        "in_channels": int(get("num_channels", 3)),
        "eps": float(get("layer_norm_eps", 1e-5)),
    }


def preprocessing_from(folder: Path, image_size: int | None) -> Preprocessing:
    """The bundle's preprocessing from ``preprocessor_config.json`` (ImageNet's at the model's size without one).

    ``size: {height, width}`` resizes to that size (then ``crop_size`` centre-crops, approximated as a
    shorter-side resize and crop); ``size: {shortest_edge}`` with ``crop_pct`` (ConvNeXt) resizes the
    shorter side to ``shortest_edge / crop_pct`` and centre-crops.
    """
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        n = image_size or 224
        return replace(IMAGENET_PREPROCESSING, input_size=(n, n))
    p = _read_json(path)
    size = p.get("size") or {}
    if isinstance(size, int):
        size = {"height": size, "width": size}
    crop = p.get("crop_size") or {}
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    interpolation = RESAMPLE.get(int(p.get("resample", 2)), "bilinear")
    if p.get("do_resize", True) and "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        pct = float(p.get("crop_pct") or 1.0)
        if edge >= 384:  # transformers warps to a square there, without cropping
            resize, input_size, fraction = "stretch", (edge, edge), 1.0
        else:
            resize, input_size, fraction = "shorter_side_crop", (edge, edge), pct
    elif p.get("do_center_crop") and crop.get("height") and size.get("height"):
        input_size = (int(crop["height"]), int(crop["width"]))
        resize, fraction = "shorter_side_crop", min(1.0, input_size[0] / int(size["height"]))
    elif size.get("height"):
        resize, input_size, fraction = "stretch", (int(size["height"]), int(size["width"])), 1.0
    else:
        n = image_size or 224
        resize, input_size, fraction = "stretch", (n, n), 1.0
    rescale = p.get("do_rescale", True)
    factor = float(p.get("rescale_factor", 1 / 255))
    if rescale and abs(factor * 255 - 1) > 1e-6:
        raise UserError(f"unsupported rescale_factor {factor} (only 1/255)", path)
    normalize = p.get("do_normalize", True)
    mean, std = p.get("image_mean"), p.get("image_std")
    return Preprocessing(
        input_size=input_size,
        channels=3,
        resize=resize,
        crop_fraction=fraction,
        interpolation=interpolation,
        scale="unit" if rescale else "raw",
        mean=tuple(float(m) for m in mean) if normalize and mean else None,
        std=tuple(float(s) for s in std) if normalize and std else None,
    )


def import_hf_folder(
    folder: str | Path,
    labels: list[str] | None = None,
    name: str | None = None,
    progress=None,
    should_stop=None,
) -> ModelBundle:
    """Import a transformers image-classification folder into a float32 bundle.

    Args:
        folder: the ``save_pretrained`` directory.
        labels: class names overriding ``id2label``.
        progress, should_stop: the usual callbacks.

    Raises:
        UserError: no weights, an unsupported model type (named), or tensors that do not fit.
        Cancelled: should_stop() turned true.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from engine.image.bundle import ModelBundle, check_weights_fit
    from engine.image.importers.checkpoint import as_float32, conform_layouts, read_state_dict
    from engine.image.models import registry

    report = progress or (lambda f, m: None)
    stop = should_stop or (lambda: False)
    folder = Path(folder).expanduser()
    cfg = _read_json(folder / "config.json")
    model_type = str(cfg.get("model_type", ""))
    archs = cfg.get("architectures") or []
    for key in [model_type, *archs]:
        if key in REFUSED:
            raise UserError(f"unsupported Hugging Face model: {REFUSED[key]}", folder)
    if model_type not in SUPPORTED:
        raise UserError(
            f"unsupported Hugging Face model type '{model_type or '?'}' "
            f"(image classifiers of type {', '.join(sorted(SUPPORTED))} import)",
            folder,
        )
    files = weight_files(folder)
    if not files:
        raise UserError(
            f"no weights in the folder (expected {' or '.join(WEIGHT_FILES)}; sharded files are not read)", folder
        )
    report(0.05, f"reading {files[0].name}")
    hf = read_state_dict(files[0])
    if stop():
        raise Cancelled()
    id2label = cfg.get("id2label") or {}
    try:
        hf_labels = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        raise UserError("config.json id2label keys are not class indices", folder) from None
    head = hf.get("classifier.weight", hf.get("classifier.1.weight"))
    if head is None:
        raise UserError("no classifier.weight: not an image-classification model (a base model has no head)", folder)
    n = int(head.shape[0])
    labels = labels or (hf_labels if len(hf_labels) == n else [str(i) for i in range(n)])
    if len(labels) != n:
        raise UserError(f"{len(labels)} labels given but the model's head has {n} classes", folder)
    if model_type in ("vit", "deit"):
        weights = vit_weights(hf, model_type)
    elif model_type == "convnext":
        weights = convnext_weights(hf)
    elif model_type == "resnet":
        weights = resnet_weights(hf)
    else:
        weights = swin_weights(hf)
    basic_resnet = model_type == "resnet" and cfg.get("layer_type") == "basic"
    arch = registry.get("resnet18" if basic_resnet else SUPPORTED[model_type])
    config = arch.default_config(**_arch_config(model_type, cfg, n, folder))
    report(0.3, f"building {arch.name}")
    try:
        model = arch.build(config)
    except (ValueError, TypeError) as exc:
        raise UserError(f"cannot build {arch.name} from config.json ({exc})", folder) from None
    params = dict(tree_flatten(model.parameters()))
    weights = conform_layouts(
        params, {k: (v.reshape(-1) if k.endswith("layer_scale") else v) for k, v in weights.items()}
    )
    check_weights_fit(model, weights, files[0])
    if stop():
        raise Cancelled()
    report(0.6, "loading weights")
    model.load_weights([(k, mx.array(as_float32(v))) for k, v in weights.items()], strict=True)
    model.eval()
    mx.eval(model.parameters())
    report(0.9, "loaded")
    return ModelBundle(
        name=name or folder.name,
        arch=arch.name,
        arch_config=config,
        preprocessing=preprocessing_from(folder, config.get("image_size")),
        labels=labels,
        model=model,
        source={
            "kind": "imported",
            "checkpoint": str(folder.resolve()),
            "format": "huggingface",
            "hf_class": archs[0] if archs else model_type,
        },
    )
