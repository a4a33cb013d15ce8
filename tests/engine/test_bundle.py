"""Quantize -> save -> load round trips and bundle error handling."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from engine.core.errors import UserError
from engine.core.fileio import OutputExists
from engine.image.bundle import ModelBundle, load_bundle
from engine.image.models import registry
from engine.image.models.small_cnn import DEFAULT_PREPROCESSING
from engine.image.quant.apply import quantize_model
from engine.image.quant.recipes import make_recipe


def tiny_bundle(seed: int = 0, num_classes: int = 4) -> ModelBundle:
    mx.random.seed(seed)
    arch = registry.get("small_cnn")
    cfg = arch.default_config(num_classes=num_classes, widths=[8, 16, 32, 64])
    model = arch.build(cfg)
    # Non-trivial BatchNorm statistics so folding/ordering mistakes show up.
    for _name, m in model.named_modules():
        if hasattr(m, "running_var"):
            m.running_mean = mx.random.normal(m.running_mean.shape) * 0.1
            m.running_var = mx.random.uniform(0.5, 1.5, m.running_var.shape)
    model.eval()
    mx.eval(model.parameters())
    return ModelBundle("tiny", "small_cnn", cfg, DEFAULT_PREPROCESSING, [f"c{i}" for i in range(num_classes)], model)


def batch(n=5, seed=3):
    return np.random.default_rng(seed).standard_normal((n, 28, 28, 1)).astype(np.float32)


@pytest.mark.parametrize("recipe", ["fp32", "fp16", "bf16", "int8", "int4", "int3"])
def test_quantize_save_load_round_trip_gives_identical_outputs(tmp_path, recipe):
    b = tiny_bundle()
    if recipe != "fp32":
        b.quantization = quantize_model(b.model, make_recipe(recipe))
    before = b.predict_logits(batch())
    b.save(tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    after = loaded.predict_logits(batch())
    np.testing.assert_array_equal(before, after)
    assert loaded.recipe_name == recipe
    assert loaded.content_hash() == b.content_hash()


def test_every_quantizable_layer_is_recorded_in_the_config(tmp_path):
    b = tiny_bundle()
    b.quantization = quantize_model(b.model, make_recipe("int4", group_size=32))
    b.save(tmp_path / "b")
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    layers = cfg["quantization"]["layers"]
    assert set(layers) == {"stem.conv", "dw.conv", "pw.conv", "conv3.conv", "conv4.conv", "head"}
    assert layers["dw.conv"]["type"] == "depthwise"
    assert all(v["bits"] == 4 and v["group_size"] == 32 for v in layers.values())


def test_quantized_model_is_close_to_float(tmp_path):
    b = tiny_bundle()
    ref = b.predict_logits(batch(16))
    q = tiny_bundle()
    q.quantization = quantize_model(q.model, make_recipe("int8"))
    out = q.predict_logits(batch(16))
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_save_is_atomic_and_replaces(tmp_path):
    b = tiny_bundle()
    b.save(tmp_path / "b")
    b2 = tiny_bundle(seed=1)
    with pytest.raises(OutputExists):
        b2.save(tmp_path / "b")  # a bundle is replaced only when asked
    b2.save(tmp_path / "b", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    np.testing.assert_array_equal(load_bundle(tmp_path / "b").predict_logits(batch()), b2.predict_logits(batch()))


def test_truncated_weights_are_a_clear_error(tmp_path):
    tiny_bundle().save(tmp_path / "b")
    w = tmp_path / "b" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_bundle(tmp_path / "b")


def test_weights_of_another_shape_name_the_tensors(tmp_path):
    tiny_bundle(num_classes=4).save(tmp_path / "b")
    cfg_path = tmp_path / "b" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["arch_config"]["num_classes"] = 7
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(
        UserError, match=r"wrong shape head\.bias \(4,\) vs \(7,\), head\.weight \(4, 64\) vs \(7, 64\)"
    ):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda p: None, "not found"),
        (lambda p: p.mkdir(), "config.json is missing"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{nope")), "not valid JSON"),
    ],
)
def test_not_a_bundle(tmp_path, setup, message):
    target = tmp_path / "x"
    setup(target)
    with pytest.raises(UserError, match=message):
        load_bundle(target)
