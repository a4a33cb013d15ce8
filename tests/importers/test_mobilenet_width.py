"""The width multiplier of a MobileNetV2 checkpoint is read off its tensors, for every usual width."""

from __future__ import annotations

import numpy as np
import pytest
from mlx.utils import tree_flatten

from engine.image.models import registry
from engine.image.models.mobilenet_v2 import infer_config


@pytest.mark.parametrize("width_mult", [0.35, 0.5, 0.75, 1.0, 1.4])
def test_width_mult_inferred_from_checkpoint(width_mult):
    arch = registry.get("mobilenet_v2")
    model = arch.build(arch.default_config(num_classes=7, width_mult=width_mult))
    # Names and per-channel shapes are torchvision's (the import tests check that against torchvision).
    weights = {k: np.zeros(v.shape, np.float32) for k, v in tree_flatten(model.parameters())}
    cfg = infer_config(weights)
    assert cfg["width_mult"] == width_mult
    assert cfg["num_classes"] == 7
