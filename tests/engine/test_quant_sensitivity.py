"""Sensitivity analysis and the budget search, against independent references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from engine.core.errors import Cancelled, UserError
from engine.image.bundle import load_bundle
from engine.image.model_card import model_card
from engine.image.quant.apply import quantize_model
from engine.image.quant.autoquant import Budget, _solve, autoquant, build_variant
from engine.image.quant.calibration import LabelledImages, load_images, logits_of
from engine.image.quant.formats import parse_spec
from engine.image.quant.recipes import make_recipe
from engine.image.quant.sensitivity import analyze_sensitivity, write_sensitivity_csv
from tests.engine.quant_helpers import batch, tiny_bundle


def _images(n=24, num_classes=4):
    return LabelledImages("random", batch(n, seed=7), np.arange(n) % num_classes)


def test_each_row_is_that_layer_alone_quantized(tmp_path):
    b = tiny_bundle()
    images = _images()
    report = analyze_sensitivity(b, [parse_spec("int2"), parse_spec("int8")], images)
    assert [i.path for i in report.layers] == ["stem.conv", "dw.conv", "pw.conv", "conv3.conv", "conv4.conv", "head"]
    assert len(report.rows) == 12
    ref = softmax(b.predict_logits(images.x).astype(np.float64), axis=1)
    for path in ("dw.conv", "conv4.conv"):
        # Reference: the whole-model quantizer with every other layer kept in float32.
        alone = tiny_bundle()
        recipe = make_recipe("fp32", overrides=[(path, "int2")], fold_bn=True)
        alone.quantization = quantize_model(alone.model, recipe, input_shape=alone.input_shape())
        assert [k for k, v in alone.quantization["layers"].items() if "bits" in v] == [path]
        q = softmax(alone.predict_logits(images.x).astype(np.float64), axis=1)
        row = report.row(path, "int2")
        assert row.kl == pytest.approx(
            np.mean([entropy(p, r) for p, r in zip(ref, q, strict=True)]), rel=1e-3, abs=1e-6
        )
        assert row.flip_rate == pytest.approx(np.mean(ref.argmax(1) != q.argmax(1)))
        assert row.accuracy == pytest.approx(np.mean(q.argmax(1) == images.y))
    assert sum(r.kl for r in report.for_format("int2")) > sum(r.kl for r in report.for_format("int8"))
    csv = write_sensitivity_csv(tmp_path / "s.csv", report).read_text().splitlines()
    assert csv[0].startswith("layer,kind,params,format,bytes")
    assert len(csv) == 13 and csv[1].startswith("stem.conv,conv,")
    # The bundle handed in is untouched (float, unfolded).
    assert b.quantization is None and "running_var" in b.model.stem.bn


def test_sensitivity_cancels_between_layers():
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        analyze_sensitivity(tiny_bundle(), [parse_spec("int4")], _images(8), should_stop=stop)


def test_quantized_models_are_refused():
    b = tiny_bundle()
    b.quantization = quantize_model(b.model, make_recipe("int8"))
    with pytest.raises(UserError, match="already quantized"):
        analyze_sensitivity(b, [parse_spec("int4")], _images(8))


@pytest.mark.parametrize("seed", range(6))
def test_knapsack_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    layers, choices = 5, 3
    sizes = np.sort(rng.integers(50, 400, size=(layers, choices)), axis=1).astype(float)
    costs = np.sort(rng.random((layers, choices)), axis=1)[:, ::-1].copy()
    capacity = int(rng.integers(int(sizes[:, 0].sum()), int(sizes[:, -1].sum())))
    best = min(
        (sum(costs[i, c] for i, c in enumerate(pick)), pick)
        for pick in itertools.product(range(choices), repeat=layers)
        if sum(sizes[i, c] for i, c in enumerate(pick)) <= capacity
    )
    choice = _solve(costs, sizes, capacity, unit=1)
    assert sum(sizes[i, c] for i, c in enumerate(choice)) <= capacity
    assert sum(costs[i, c] for i, c in enumerate(choice)) == pytest.approx(best[0])
    coarse = _solve(costs, sizes, capacity, unit=7)  # rounding never breaks the budget
    assert sum(sizes[i, c] for i, c in enumerate(coarse)) <= capacity
    assert _solve(costs, sizes, int(sizes[:, 0].sum()) - 1, unit=1) is None


def test_autoquant_beats_uniform_int3_at_equal_size_on_the_default_model():
    b = load_bundle("default")
    cal = load_images(b, "default-val", 32)
    test = load_images(b, "default", 200, seed=1)
    uniform = build_variant(b, make_recipe("int3"))
    u_card = model_card(uniform)
    res = autoquant(b, Budget("bpw", u_card.bits_per_weight), cal, candidates=("int2", "int3", "int4", "int8"))
    auto = build_variant(b, res.recipe)
    a_card = model_card(auto)
    assert a_card.bits_per_weight <= u_card.bits_per_weight + 1e-9
    assert a_card.bytes == res.bytes  # the search's size model is the stored size
    u_acc = np.mean(logits_of(uniform.model, test.x).argmax(1) == test.y)
    a_acc = np.mean(logits_of(auto.model, test.x).argmax(1) == test.y)
    f_acc = np.mean(logits_of(b.model, test.x).argmax(1) == test.y)
    assert a_acc >= u_acc + 0.05, (a_acc, u_acc)
    assert a_acc >= f_acc - 0.02
    assert res.trace[-1].action == "chosen"

    # Accuracy budget: the smallest probed model within the drop is chosen.
    val = load_images(b, "default-val", 64, seed=2)
    drop = autoquant(
        b, Budget("drop", 1.0), cal, val, report=res.sensitivity, candidates=("int2", "int3", "int4", "int8")
    )
    probes = [s for s in drop.trace if s.action == "probe"]
    assert drop.met and drop.trace[-1].meets
    assert 100 * (drop.float_accuracy - drop.accuracy) <= 1.0
    assert drop.bytes == min(s.bytes for s in probes if s.meets)
    assert all(not s.meets for s in probes if s.bytes < drop.bytes)
    with pytest.raises(UserError, match="below the smallest possible model"):
        autoquant(b, Budget("bpw", 1.0), cal, report=res.sensitivity, candidates=("int2", "int3", "int4", "int8"))
