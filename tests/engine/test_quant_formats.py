"""Every storage format through quantize -> save -> load, and what the files hold."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from engine.core.errors import UserError
from engine.image.bundle import load_bundle
from engine.image.model_card import model_card
from engine.image.quant.apply import quantizable_layers, quantize_model
from engine.image.quant.formats import MODE_RULES, parse_spec, quantized_spec, supported_modes
from engine.image.quant.recipes import make_recipe
from engine.image.quant.sizing import layer_bytes
from tests.engine.quant_helpers import all_formats, batch, tiny_bundle


def test_supported_modes_are_probed_and_really_work():
    modes = supported_modes()
    assert "affine" in modes
    rng = np.random.default_rng(0)
    w = mx.array(rng.standard_normal((4, 64)).astype(np.float32))
    for mode in modes:
        gs, bits = MODE_RULES[mode]["default"]
        wq, scales, *rest = mx.quantize(w, group_size=gs, bits=bits, mode=mode)
        back = mx.dequantize(wq, scales, rest[0] if rest else None, group_size=gs, bits=bits, mode=mode)
        # Within a few quantization steps of the input: the probe found a working mode.
        assert float(mx.abs(back - w).max()) < 0.6 * float(mx.abs(w).max())
    for mode in set(MODE_RULES) - set(modes):
        with pytest.raises(UserError, match="not supported"):
            quantized_spec(mode)


@pytest.mark.parametrize("name,group_size", all_formats())
def test_every_format_round_trips_exactly_and_records_every_layer(tmp_path, name, group_size):
    b = tiny_bundle()
    recipe = make_recipe(name, group_size)
    b.quantization = quantize_model(b.model, recipe, input_shape=b.input_shape())
    before = b.predict_logits(batch())
    b.save(tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    np.testing.assert_array_equal(before, loaded.predict_logits(batch()))
    assert loaded.content_hash() == b.content_hash()
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())["quantization"]
    assert set(cfg["layers"]) == {"stem.conv", "dw.conv", "pw.conv", "conv3.conv", "conv4.conv", "head"}
    spec = parse_spec(name, group_size)
    for entry in cfg["layers"].values():
        if spec.quantized:
            assert entry["mode"] == spec.mode and entry["bits"] == spec.bits
            assert entry["group_size"] <= spec.group_size
        else:
            assert entry == {"type": entry["type"], "dtype": spec.dtype}


@pytest.mark.parametrize(
    "name,group_size", [("int8", 64), ("int4", 32), ("int2", 128), ("mxfp4", None), ("fp16", None)]
)
def test_stored_bytes_match_the_size_model(tmp_path, name, group_size):
    """sizing.layer_bytes (used by the editor and the budget search) predicts the file exactly."""
    b = tiny_bundle()
    float_layers = {i.path: i for i in quantizable_layers(b.model, b.input_shape())}
    recipe = make_recipe(name, group_size)
    b.quantization = quantize_model(b.model, recipe, input_shape=b.input_shape())
    card = {r.name: r for r in model_card(b).layers}
    for path, entry in b.quantization["layers"].items():
        info = float_layers[path]
        has_bias = info.has_bias or any(c == path for c, _ in b.quantization["folded"])
        predicted = layer_bytes(info.kind, info.shape, parse_spec(name, group_size), has_bias, recipe.scale_dtype)
        assert card[path].bytes == predicted, (path, entry)


def test_affine_scales_are_stored_as_float16_and_reload_identically(tmp_path):
    b = tiny_bundle()
    b.quantization = quantize_model(b.model, make_recipe("int4"), input_shape=b.input_shape())
    b.save(tmp_path / "b")
    raw = mx.load(str(tmp_path / "b" / "model.safetensors"))
    assert raw["conv4.conv.scales"].dtype == mx.float16
    assert raw["conv4.conv.biases"].dtype == mx.float16
    assert raw["conv4.conv.weight"].dtype == mx.uint32
    loaded = load_bundle(tmp_path / "b")
    assert loaded.model.conv4.conv.scales.dtype == mx.float32  # computed in float32
    np.testing.assert_array_equal(np.array(loaded.model.conv4.conv.scales), np.array(raw["conv4.conv.scales"]))


def test_float32_scale_storage_is_kept_when_asked(tmp_path):
    b = tiny_bundle()
    b.quantization = quantize_model(b.model, make_recipe("int4", scale_dtype="float32"), input_shape=b.input_shape())
    b.save(tmp_path / "b")
    assert mx.load(str(tmp_path / "b" / "model.safetensors"))["conv4.conv.scales"].dtype == mx.float32
    np.testing.assert_array_equal(b.predict_logits(batch()), load_bundle(tmp_path / "b").predict_logits(batch()))


@pytest.mark.parametrize("text", ["int9", "int4-g48", "fp8", "mxfp6", "int4-g16"])
def test_impossible_formats_are_user_errors(text):
    with pytest.raises(UserError):
        parse_spec(text)


def test_format_names_parse_back():
    for name, gs in all_formats():
        spec = parse_spec(name, gs)
        assert parse_spec(spec.name()) == spec
        assert parse_spec(spec.label()) == spec
