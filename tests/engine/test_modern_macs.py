"""MACs (attention matmuls included) and parameter counts of the modern families against torchvision's metadata.

torchvision publishes, per pretrained weight, the GMACs at its evaluation size
(``meta["_ops"]``) and the parameter count (``meta["num_params"]``); reading them
downloads nothing.
"""

from __future__ import annotations

import pytest
from mlx.utils import tree_flatten

from engine.image.macs import count_macs
from engine.image.models import registry
from tests.torchvision_ref import torchvision  # noqa: F401  (before torchvision.models)

NAMES = [
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "efficientnet_v2_s",
    "convnext_tiny",
    "regnet_y_400mf",
    "regnet_x_400mf",
    "vit_b_16",
    "swin_t",
]


@pytest.mark.parametrize("name", NAMES)
def test_macs_and_params_match_torchvision_metadata(name):
    from torchvision.models import get_model_weights

    weights = list(get_model_weights(name))[0]
    size = weights.transforms().crop_size[0]
    arch = registry.get(name)
    model = arch.build(arch.default_config())
    macs = count_macs(model, (size, size, 3))
    assert sum(macs.values()) / 1e9 == pytest.approx(weights.meta["_ops"], abs=0.0015)
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    assert trainable == weights.meta["num_params"]


def test_attention_matmuls_are_counted_on_the_attention_module():
    arch = registry.get("vit_b_16")
    macs = count_macs(arch.build(arch.default_config()), (224, 224, 3))
    attn = macs["encoder.layers.encoder_layer_0.self_attention"]
    assert attn == 2 * 197 * 197 * 768  # q·kᵀ and attention·v over 197 tokens
    arch = registry.get("swin_t")
    macs = count_macs(arch.build(arch.default_config()), (224, 224, 3))
    # 64 windows of 49 tokens at 56x56, width 96.
    assert macs["features.1.0.attn"] == 64 * 2 * 49 * 49 * 96
