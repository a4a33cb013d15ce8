"""timm's ViT-S/16, DeiT and ConvNeXt state dicts import under timm's names with timm's logits."""

from __future__ import annotations

import numpy as np
import pytest

from engine.image.importers.checkpoint import import_checkpoint
from tests.importers.modern_reference import check_parity, logits, randomize, reference_input, save_state_dict
from tests.torchvision_ref import torchvision  # noqa: F401  (timm imports torchvision)

timm = pytest.importorskip("timm")


def _randomize_timm(model):
    """randomize() plus timm's own names for the tokens and layer scales."""
    import torch

    randomize(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("cls_token", "pos_embed"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif name.endswith(".gamma"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.4 + 0.1)
    return model


@pytest.mark.parametrize(
    "timm_name, arch, kwargs, shape",
    [
        ("vit_small_patch16_224", "vit_small_patch16_224", {"depth": 2}, (2, 3, 224, 224)),
        ("deit_tiny_patch16_224", "deit_tiny_patch16_224", {"depth": 2}, (2, 3, 224, 224)),
        ("convnext_tiny", "convnext_tiny", {"depths": (1, 1, 2, 1)}, (2, 3, 64, 48)),
    ],
)
def test_timm_state_dict_matches_timm(tmp_path, timm_name, arch, kwargs, shape):
    model = _randomize_timm(timm.create_model(timm_name, pretrained=False, num_classes=6, **kwargs))
    x = reference_input(shape)
    want = logits(model, x)
    path = save_state_dict(model, tmp_path / "timm.safetensors")
    bundle = import_checkpoint(arch, path)
    assert bundle.arch_config["num_classes"] == 6
    check_parity(bundle.predict_logits(np.ascontiguousarray(x.transpose(0, 2, 3, 1))), want)
