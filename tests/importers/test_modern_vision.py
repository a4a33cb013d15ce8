"""The modern torchvision families import from .safetensors and .pth with torchvision's logits.

Each reference is a torchvision model (its own builder, or its class with fewer
layers where the full model is too slow for two CPU cores) with random weights and
non-trivial normalisation statistics; its state dict is written by safetensors'
torch writer or ``torch.save``, imported by ``--arch`` name and run in MLX.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from engine.core.errors import UserError
from engine.image.importers.checkpoint import import_checkpoint
from tests.importers.modern_reference import check_parity, logits, randomize, reference_input, save_state_dict
from tests.torchvision_ref import torchvision

CNN_INPUT = (2, 3, 64, 48)  # non-square, so a swapped H/W shows
VIT_INPUT = (2, 3, 224, 224)


def _vit(layers: int, heads: int, hidden: int, mlp: int, classes: int = 10):
    from torchvision.models import VisionTransformer

    return VisionTransformer(224, 16, layers, heads, hidden, mlp, num_classes=classes)


def _swin(depths=(2, 2, 2, 2), classes: int = 10):
    from torchvision.models import SwinTransformer

    return SwinTransformer([4, 4], 96, list(depths), [3, 6, 12, 24], [7, 7], num_classes=classes)


# arch name -> (reference builder, input shape, residual_gamma for randomize)
CASES = {
    "mobilenet_v3_large": (lambda: torchvision.models.mobilenet_v3_large(num_classes=10), CNN_INPUT, None),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=7), CNN_INPUT, None),
    # Residual branches closing at gamma 0.4-0.6: at 1 the 40 blocks grow activations to 1e5 (float32 chaos),
    # at 0.2 the logits stop depending on the input.
    "efficientnet_v2_s": (lambda: torchvision.models.efficientnet_v2_s(num_classes=10), CNN_INPUT, (0.4, 0.6)),
    "convnext_tiny": (lambda: torchvision.models.convnext_tiny(num_classes=10), CNN_INPUT, None),
    "regnet_y_400mf": (lambda: torchvision.models.regnet_y_400mf(num_classes=10), CNN_INPUT, None),
    "regnet_x_400mf": (lambda: torchvision.models.regnet_x_400mf(num_classes=10), CNN_INPUT, None),
    # ViT-B/16 widths with 2 of its 12 layers; ViT-S/16 widths (timm's) with 2 layers.
    "vit_b_16": (lambda: _vit(2, 12, 768, 3072), VIT_INPUT, None),
    "vit_s_16": (lambda: _vit(2, 6, 384, 1536), VIT_INPUT, None),
    # Swin-T widths, heads and windows with 2 blocks a stage (shifted and unshifted in each).
    "swin_t": (lambda: _swin(), VIT_INPUT, None),
}


@functools.cache
def _reference(arch: str):
    build, shape, gamma = CASES[arch]
    import torch

    torch.manual_seed(0)
    model = randomize(build(), residual_gamma=gamma)
    x = reference_input(shape)
    return model, x, logits(model, x)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("arch", list(CASES))
def test_state_dict_matches_torchvision(tmp_path, arch, suffix):
    model, x, want = _reference(arch)
    path = save_state_dict(model, tmp_path / f"model{suffix}")
    bundle = import_checkpoint(arch, path)
    assert bundle.arch == arch and bundle.arch_config["num_classes"] == want.shape[1] == len(bundle.labels)
    got = bundle.predict_logits(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    check_parity(got, want)


def test_convnext_small_depths_read_off_the_checkpoint(tmp_path):
    model = randomize(torchvision.models.convnext_small(num_classes=4))
    x = reference_input((2, 3, 32, 32))
    path = save_state_dict(model, tmp_path / "cs.safetensors")
    bundle = import_checkpoint("convnext_small", path)
    assert tuple(bundle.arch_config["depths"]) == (3, 3, 27, 3)
    check_parity(bundle.predict_logits(x.transpose(0, 2, 3, 1).copy()), logits(model, x))


def test_swin_pads_a_map_that_windows_do_not_tile(tmp_path):
    """A 160x96 input gives 40x24 maps: padded to whole windows, shifted, cropped back, as torchvision does."""
    model = randomize(_swin(depths=(2, 2, 2, 2)))
    x = reference_input((2, 3, 160, 96))
    path = save_state_dict(model, tmp_path / "swin.safetensors")
    bundle = import_checkpoint("swin_t", path)
    check_parity(bundle.predict_logits(x.transpose(0, 2, 3, 1).copy()), logits(model, x))


def test_unsupported_variants_are_named(tmp_path):
    import torch

    vit = _vit(1, 2, 64, 128)
    sd = {k: v.clone() for k, v in vit.state_dict().items()}
    sd["dist_token"] = torch.zeros(1, 1, 64)
    sd["head_dist.weight"] = torch.zeros(10, 64)
    torch.save(sd, tmp_path / "deit_distilled.pth")
    with pytest.raises(UserError, match="distilled DeiT"):
        import_checkpoint("deit_small", tmp_path / "deit_distilled.pth")
    from torchvision.models import swin_v2_t

    save_state_dict(swin_v2_t(num_classes=3), tmp_path / "swin_v2.safetensors")
    with pytest.raises(UserError, match="Swin V2"):
        import_checkpoint("swin_t", tmp_path / "swin_v2.safetensors")


def test_wrong_family_is_named(tmp_path):
    model, _, _ = _reference("regnet_y_400mf")
    path = save_state_dict(model, tmp_path / "regnet.safetensors")
    with pytest.raises(UserError) as err:
        import_checkpoint("convnext_tiny", path)
    assert "\n" not in str(err.value)


def test_vit_input_size_follows_its_position_embeddings(tmp_path):
    from torchvision.models import VisionTransformer

    from engine.image.model_card import model_card

    model = randomize(VisionTransformer(64, 8, 1, 2, 32, 64, num_classes=3))
    x = reference_input((2, 3, 64, 64))
    bundle = import_checkpoint(
        "vit_b_16", save_state_dict(model, tmp_path / "vit64.pth"), arch_overrides={"num_heads": 2}
    )
    assert bundle.preprocessing.input_size == (64, 64)
    assert (bundle.arch_config["image_size"], bundle.arch_config["patch_size"]) == (64, 8)
    assert model_card(bundle).macs > 0
    check_parity(bundle.predict_logits(x.transpose(0, 2, 3, 1).copy()), logits(model, x))
