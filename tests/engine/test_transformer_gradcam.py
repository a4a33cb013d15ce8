"""Grad-CAM of ViT and Swin: a token map on the patch grid, equal to the same map computed in PyTorch.

ViT: the target is the last encoder block's input tokens (the class token excluded)
reshaped to the patch grid; the class score reaches them through that block's
attention. Swin: the final LayerNorm's (N, 7, 7, C) token map. The reference takes
the same activation and its gradient with torch hooks on the torchvision model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.image.gradcam import cam_from_gradients, default_layer, gradcam, layer_gradients
from engine.image.importers.checkpoint import import_checkpoint
from tests.importers.modern_reference import randomize, reference_input, save_state_dict
from tests.torchvision_ref import torchvision  # noqa: F401  (before torchvision.models)


def _torch_cam(model, module, x_nchw, cls, pre_hook: bool, drop_prefix: int):
    seen = {}

    def keep(t):
        t.retain_grad()
        seen["a"] = t

    if pre_hook:
        handle = module.register_forward_pre_hook(lambda m, args: keep(args[0]))
    else:
        handle = module.register_forward_hook(lambda m, args, out: keep(out))
    out = model(torch.from_numpy(x_nchw))
    out[0, cls].backward()
    handle.remove()
    a, g = seen["a"].detach().numpy(), seen["a"].grad.numpy()
    if drop_prefix:
        n, t, d = a.shape
        side = int(round((t - drop_prefix) ** 0.5))
        a = a[:, drop_prefix:].reshape(n, side, side, d)
        g = g[:, drop_prefix:].reshape(n, side, side, d)
    return cam_from_gradients(a, g)[0]


def _close(got, want):
    assert got.shape == want.shape
    assert want.max() > 0
    assert np.abs(got - want).max() <= 1e-3 * want.max(), np.abs(got - want).max() / want.max()


def test_vit_token_map_matches_torch(tmp_path):
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    model = randomize(VisionTransformer(224, 16, 2, 3, 96, 192, num_classes=5))
    bundle = import_checkpoint(
        "vit_s_16", save_state_dict(model, tmp_path / "vit.safetensors"), arch_overrides={"num_heads": 3}
    )
    assert default_layer(bundle) == "patch_grid"
    x = reference_input((1, 3, 224, 224))
    cls = 2
    g = layer_gradients(bundle, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), "patch_grid", np.array([cls]))
    got = cam_from_gradients(g.activation, g.gradient)[0]
    assert got.shape == (14, 14)
    want = _torch_cam(model, model.encoder.layers[-1], x, cls, pre_hook=True, drop_prefix=1)
    _close(got, want)


def test_swin_token_map_matches_torch(tmp_path):
    from torchvision.models import SwinTransformer

    torch.manual_seed(0)
    model = randomize(SwinTransformer([4, 4], 16, [2, 2], [1, 2], [7, 7], num_classes=5))
    bundle = import_checkpoint("swin_t", save_state_dict(model, tmp_path / "swin.safetensors"))
    assert default_layer(bundle) == "norm"
    x = reference_input((1, 3, 224, 224))
    g = layer_gradients(bundle, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), "norm", np.array([1]))
    got = cam_from_gradients(g.activation, g.gradient)[0]
    assert got.shape == (28, 28)
    want = _torch_cam(model, model.norm, x, 1, pre_hook=False, drop_prefix=0)
    _close(got, want)


def test_gradcam_on_an_image_gives_a_patch_grid_heatmap(tmp_path):
    from torchvision.models import VisionTransformer

    model = randomize(VisionTransformer(224, 16, 2, 3, 96, 192, num_classes=5))
    bundle = import_checkpoint(
        "vit_s_16", save_state_dict(model, tmp_path / "vit.pth"), arch_overrides={"num_heads": 3}
    )
    image = (np.random.default_rng(0).random((300, 260, 3)) * 255).astype(np.uint8)
    m = gradcam(bundle, image)
    assert m.layer == "patch_grid" and m.layer_map.shape == (14, 14)
    assert m.heatmap.shape == (224, 224) and m.heatmap.max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "name, size",
    [
        ("mobilenet_v3_small", 64),
        ("convnext_tiny", 64),
        ("regnet_x_400mf", 64),
        ("deit_tiny", 224),
    ],
)
def test_every_new_family_has_a_gradcam_layer(name, size):
    import dataclasses

    import mlx.core as mx

    from engine.image.bundle import ModelBundle
    from engine.image.models import registry

    arch = registry.get(name)
    cfg = arch.default_config(num_classes=3)
    mx.random.seed(0)
    model = arch.build(cfg)
    model.eval()
    prep = dataclasses.replace(arch.default_preprocessing, input_size=(size, size))
    bundle = ModelBundle(name, name, cfg, prep, ["a", "b", "c"], model)
    m = gradcam(bundle, (np.random.default_rng(1).random((size, size, 3)) * 255).astype(np.uint8), class_index=0)
    assert m.heatmap.shape == (size, size) and np.isfinite(m.heatmap).all()
