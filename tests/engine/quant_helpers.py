"""Tiny models and data shared by the quantization tests."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine.image.bundle import ModelBundle
from engine.image.models import registry
from engine.image.models.small_cnn import DEFAULT_PREPROCESSING


def tiny_bundle(seed: int = 0, num_classes: int = 4, widths=(8, 16, 32, 64)) -> ModelBundle:
    """A random small_cnn with non-trivial BatchNorm statistics (so folding mistakes show)."""
    mx.random.seed(seed)
    arch = registry.get("small_cnn")
    cfg = arch.default_config(num_classes=num_classes, widths=list(widths))
    model = arch.build(cfg)
    for _name, m in model.named_modules():
        if hasattr(m, "running_var"):
            m.running_mean = mx.random.normal(m.running_mean.shape) * 0.1
            m.running_var = mx.random.uniform(0.5, 1.5, m.running_var.shape)
            m.weight = mx.random.uniform(0.5, 1.5, m.weight.shape)
            m.bias = mx.random.normal(m.bias.shape) * 0.1
    model.eval()
    mx.eval(model.parameters())
    return ModelBundle("tiny", "small_cnn", cfg, DEFAULT_PREPROCESSING, [f"c{i}" for i in range(num_classes)], model)


def batch(n: int = 5, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 28, 28, 1)).astype(np.float32)


def all_formats() -> list[tuple[str, int | None]]:
    """(recipe name, group size) for every format the installed MLX supports."""
    from engine.image.quant.formats import supported_modes

    out = [("fp16", None), ("bf16", None)]
    out += [(f"int{b}", g) for b in (8, 6, 5, 4, 3, 2) for g in (32, 64, 128)]
    out += [(m, None) for m in ("mxfp4", "mxfp8", "nvfp4") if m in supported_modes()]
    return out
