"""Editing a bundle's preprocessing and labels: atomic, weights untouched, used by predict."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from engine.core.errors import UserError
from engine.core.paths import DEFAULT_MODEL_DIR
from engine.image.bundle import load_bundle
from engine.image.data.images import load_image
from engine.image.data.presets import apply_spec, describe, read_labels
from engine.jobs.edit_inputs import EditInputsJob, update_bundle_inputs
from engine.jobs.image import PredictJob
from engine.runtime import JobContext, Workspace


@pytest.fixture
def bundle_copy(tmp_path):
    b = load_bundle("default")
    b.save(tmp_path / "copy")
    return tmp_path / "copy"


def test_edit_is_applied_by_predict_and_keeps_weights(bundle_copy):
    weights_before = (bundle_copy / "model.safetensors").read_bytes()
    sample = str(next((DEFAULT_MODEL_DIR.parent / "samples").glob("*.png")))
    b = load_bundle(bundle_copy)
    raw = replace(b.preprocessing, scale="raw", mean=None, std=None, interpolation="nearest")
    labels = tuple(f"digit {i}" for i in range(10))
    card = EditInputsJob(str(bundle_copy), raw, labels).run(JobContext(), Workspace())
    assert card.labels == labels and card.preprocessing["scale"] == "raw"
    assert (bundle_copy / "model.safetensors").read_bytes() == weights_before
    assert not [p for p in bundle_copy.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    out = PredictJob((str(bundle_copy),), (sample,)).run(JobContext(), Workspace())
    x = raw(load_image(sample))[None]
    assert np.allclose(out.logits[0], load_bundle(bundle_copy).predict_logits(x), atol=1e-6)
    assert x.max() > 1.5  # really unscaled
    assert out.predictions[0][0][0].label.startswith("digit ")


def test_edit_refuses_default_and_wrong_label_count(bundle_copy):
    with pytest.raises(UserError, match="read-only"):
        update_bundle_inputs("default", labels=[str(i) for i in range(10)])
    with pytest.raises(UserError, match="3 labels given but the model has 10"):
        update_bundle_inputs(bundle_copy, labels=["a", "b", "c"])
    assert json.loads((bundle_copy / "config.json").read_text())["labels"][0] == "0"


def test_presets_and_overrides():
    base = load_bundle("default").preprocessing.__class__()
    p = apply_spec(base, "imagenet,size=160x128,resize=shorter_side_crop,crop=0.9,interpolation=bicubic")
    assert (p.input_size, p.crop_fraction, p.interpolation, p.mean) == (
        (160, 128),
        0.9,
        "bicubic",
        (0.485, 0.456, 0.406),
    )
    c = apply_spec(base, "caffe")
    assert (c.channel_order, c.scale, c.std) == ("BGR", "raw", None)
    assert describe(apply_spec(base, "inception")) == "224×224 RGB, stretch bilinear, [-1,1]"
    # [-1, 1] scaling really maps 0 -> -1 and 255 -> 1.
    x = apply_spec(base, "tf").normalize(np.array([[[[0, 255, 127]]]], np.uint8))
    assert np.allclose(x, [[[[-1.0, 1.0, 127 / 127.5 - 1]]]])
    with pytest.raises(UserError, match="mean needs 1 or 3 values"):
        apply_spec(base, "unit,mean=0.1/0.2")


def test_labels_from_files(tmp_path):
    (tmp_path / "a.txt").write_text("cat\ndog\n\n")
    (tmp_path / "b.json").write_text('{"1": ["n2", "dog"], "0": ["n1", "cat"]}')
    (tmp_path / "c.json").write_text('["cat", "dog"]')
    for f in ("a.txt", "b.json", "c.json"):
        assert read_labels(str(tmp_path / f)) == ["cat", "dog"]
    assert read_labels("cat, dog") == ["cat", "dog"]
    (tmp_path / "gap.json").write_text('{"0": "a", "2": "c"}')
    with pytest.raises(UserError, match="without gaps"):
        read_labels(str(tmp_path / "gap.json"))
    with pytest.raises(UserError, match="not found"):
        read_labels(str(tmp_path / "missing.txt"))
