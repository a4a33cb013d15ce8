"""MACs in the model card against torchvision's published operation counts and a hand count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.image.macs import count_macs
from engine.image.models import registry

# torchvision's model metadata ("_ops", in GMACs at 224x224).
TORCHVISION_GMACS = {
    "resnet18": 1.814,
    "resnet50": 4.089,
    "mobilenet_v2": 0.301,
    "efficientnet_b0": 0.386,
    "densenet121": 2.834,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_GMACS))
def test_macs_match_torchvision_metadata(name):
    arch = registry.get(name)
    model = arch.build(arch.default_config())
    total = sum(count_macs(model, (224, 224, 3)).values()) / 1e9
    assert total == pytest.approx(TORCHVISION_GMACS[name], rel=0.005)


def test_small_cnn_macs_by_hand_and_after_quantization():
    from engine.image.bundle import load_bundle
    from engine.image.model_card import model_card
    from engine.image.quant.apply import quantize_model
    from engine.image.quant.recipes import make_recipe

    b = load_bundle("default")
    card = model_card(b)
    # 28x28x1: stem 3x3 1->16 @28, dw 3x3 @14, pw 16->32 @14, 3x3 32->64 @7, 3x3 64->128 @4, Linear 128->10.
    by_hand = (
        28 * 28 * 16 * 9 + 14 * 14 * 16 * 9 + 14 * 14 * 32 * 16 + 7 * 7 * 64 * 9 * 32 + 4 * 4 * 128 * 9 * 64 + 1280
    )
    assert card.macs == by_hand
    quantize_model(b.model, make_recipe("int4"))
    assert model_card(b).macs == by_hand


def test_info_json_has_macs_and_per_layer_format(tmp_path):
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(
        [sys.executable, str(root / "main.py"), "info", "--model", "default", "--json"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    card = json.loads(r.stdout)
    assert card["macs"] == sum(layer["macs"] for layer in card["layers"]) > 0
    assert {layer["format"] for layer in card["layers"]} == {"fp32"}


def test_xception_parameter_count_equals_keras():
    """keras.applications.Xception(weights=None).count_params() is 22,910,480 (BatchNorm statistics included)."""
    from mlx.utils import tree_flatten

    arch = registry.get("xception")
    model = arch.build(arch.default_config())
    assert sum(v.size for _, v in tree_flatten(model.parameters())) == 22_910_480
