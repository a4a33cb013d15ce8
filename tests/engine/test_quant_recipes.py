"""Recipes: overrides, keep first/last, mixed recipes, JSON files; each reloads exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.core.errors import UserError
from engine.image.bundle import load_bundle
from engine.image.quant.apply import quantize_model
from engine.image.quant.recipes import builtin_names, load_recipe_file, make_recipe, resolve_recipe
from tests.engine.quant_helpers import batch, tiny_bundle


def _layers(b, recipe):
    b.quantization = quantize_model(b.model, recipe, input_shape=b.input_shape())
    return {k: (v.get("bits") or v.get("dtype")) for k, v in b.quantization["layers"].items()}


def test_keep_first_last_and_pattern_overrides():
    recipe = make_recipe(
        "int4", keep_first="int8", keep_last="fp16", overrides=[("conv3.*", "int2"), ("pw.conv", "bf16")]
    )
    assert _layers(tiny_bundle(), recipe) == {
        "stem.conv": 8,
        "dw.conv": 4,
        "pw.conv": "bfloat16",
        "conv3.conv": 2,
        "conv4.conv": 4,
        "head": "float16",
    }


def test_pattern_overrides_win_over_keep_first():
    recipe = make_recipe("int4", keep_first="int8", overrides=[("stem.*", "int3")])
    assert _layers(tiny_bundle(), recipe)["stem.conv"] == 3


@pytest.mark.parametrize("name,body,high", [("mixed-4-8", 4, 8), ("mixed-3-6", 3, 6), ("mixed-2-8", 2, 8)])
def test_mixed_recipes(name, body, high):
    assert name in builtin_names()
    layers = _layers(tiny_bundle(), make_recipe(name))
    assert layers == {
        "stem.conv": high,
        "dw.conv": high,
        "pw.conv": body,
        "conv3.conv": body,
        "conv4.conv": body,
        "head": high,
    }


def test_mixed_recipe_needs_fewer_body_bits():
    with pytest.raises(UserError, match="fewer bits"):
        make_recipe("mixed-8-4")


def test_json_recipe_file_round_trips_exactly(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps(
            {
                "name": "my-mix",
                "default": "int4",
                "group_size": 32,
                "keep_last": "int8",
                "kinds": {"depthwise": "fp16"},
                "layers": {"conv4.conv": "int3", "stem.*": {"mode": "affine", "bits": 6, "group_size": 64}},
            }
        )
    )
    recipe = resolve_recipe(str(path))
    assert recipe.name == "my-mix"
    b = tiny_bundle()
    assert _layers(b, recipe) == {
        "stem.conv": 6,
        "dw.conv": "float16",
        "pw.conv": 4,
        "conv3.conv": 4,
        "conv4.conv": 3,
        "head": 8,
    }
    assert b.quantization["layers"]["conv3.conv"]["group_size"] == 32
    b.save(tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    np.testing.assert_array_equal(loaded.predict_logits(batch()), b.predict_logits(batch()))
    assert loaded.recipe_name == "my-mix"

    # The saved bundle's config.json is itself a recipe that reproduces every layer exactly.
    again = tiny_bundle()
    again.quantization = quantize_model(
        again.model, load_recipe_file(tmp_path / "b" / "config.json"), input_shape=again.input_shape()
    )
    assert again.quantization["layers"] == b.quantization["layers"]
    assert again.quantization["folded"] == b.quantization["folded"]
    np.testing.assert_array_equal(again.predict_logits(batch()), b.predict_logits(batch()))


@pytest.mark.parametrize(
    "content,message",
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"default": "int9"}), "not 9"),
        (json.dumps({"default": "int4", "colour": "red"}), "unknown recipe keys"),
        (json.dumps({"default": "int4", "kinds": {"attention": "int8"}}), "unknown layer kinds"),
    ],
)
def test_bad_recipe_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        resolve_recipe(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_recipe_names_list_the_known_ones():
    with pytest.raises(UserError, match="mixed-4-8"):
        make_recipe("int4-mixed")
