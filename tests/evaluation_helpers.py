"""Tiny models and image folders for the evaluation tests (made here, nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.image.data.preprocess import Preprocessing


def tiny_bundle(
    out: Path, classes: int = 3, size: int = 16, channels: int = 3, seed: int = 0, name: str = "tiny", labels=None
):
    """A random-initialised small_cnn bundle (widths 4/8/8/16) saved to ``out``; returns the bundle."""
    import mlx.core as mx

    from engine.image.bundle import ModelBundle
    from engine.image.models import registry

    mx.random.seed(seed)
    arch = registry.get("small_cnn")
    cfg = {"num_classes": classes, "in_channels": channels, "widths": [4, 8, 8, 16]}
    model = arch.build(cfg)
    # Non-trivial BatchNorm statistics so the affine part of each block matters.
    for _, m in model.named_modules():
        if m.__class__.__name__ == "BatchNorm":
            n = m.weight.shape[0]
            m.running_mean = mx.random.normal((n,)) * 0.1
            m.running_var = mx.random.uniform(0.5, 1.5, (n,))
    model.eval()
    mx.eval(model.parameters())
    bundle = ModelBundle(
        name=name,
        arch="small_cnn",
        arch_config=cfg,
        preprocessing=Preprocessing(input_size=(size, size), channels=channels),
        labels=list(labels) if labels else [f"class{i}" for i in range(classes)],
        model=model,
    )
    bundle.save(out)
    return bundle


def image_folder(root: Path, classes=("a", "b", "c"), per_class: int = 4, size: int = 24, seed: int = 0) -> Path:
    """Class subfolders of random-pattern PNGs."""
    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = (rng.random((size, size, 3)) * 128 + 40 * ci).clip(0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{c}_{i}.png")
    return root
