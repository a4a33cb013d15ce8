"""Autoquant over (format, method) per layer, and per-layer methods in one sequential pass."""

from __future__ import annotations

import itertools

import mlx.core as mx
import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from engine.core.errors import UserError
from engine.image.bundle import load_bundle
from engine.image.quant.apply import apply_quant_config, quantize_model
from engine.image.quant.autoquant import Budget, autoquant, build_variant
from engine.image.quant.calibration import LabelledImages, load_images, logits_of
from engine.image.quant.formats import parse_spec
from engine.image.quant.methods import quantize_with_method
from engine.image.quant.methods.sensitivity import analyze_sensitivity_methods
from engine.image.quant.recipes import make_recipe, resolve_recipe
from engine.image.quant.sensitivity import analyze_sensitivity
from tests.engine.quant_helpers import batch, tiny_bundle
from tests.engine.test_quant_methods import TwoConvs, _flat, build, images


def _kl(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(float || quantized) over images, from scipy (independent of the engine's OutputChange)."""
    p = softmax(ref_logits.astype(np.float64), axis=1)
    q = softmax(logits.astype(np.float64), axis=1)
    return float(np.mean([entropy(a, b) for a, b in zip(p, q, strict=True)]))


# -- per-layer methods in quantize_with_method ---------------------------------------------------


def test_per_layer_methods_run_in_one_sequential_pass_and_reload():
    x = images(32, 8, 8, 8, seed=1)
    f, rtn, mixed = build(TwoConvs), build(TwoConvs), build(TwoConvs)
    recipe = resolve_recipe("int2-g32")
    shape = (8, 8, 8)
    quantize_model(rtn, recipe, input_shape=shape)
    qconfig, report = quantize_with_method(
        mixed, recipe, {"conv1": "rtn", "conv2": "gptq+bc"}, x, "rand", input_shape=shape
    )
    # conv1 is rounded to nearest exactly as quantize_model does it; conv2's codes are GPTQ's.
    for name in ("weight", "scales", "biases", "bias"):
        np.testing.assert_array_equal(np.array(mixed.conv1[name]), np.array(rtn.conv1[name]))
    assert not np.array_equal(np.array(mixed.conv2.weight), np.array(rtn.conv2.weight))
    # Same pass: conv2's bias correction saw conv1 already quantized, so the mean output of the
    # whole model (conv1's RTN error included) is back at the float model's.
    yf = np.array(f(mx.array(x))).reshape(-1, 16)
    shift_rtn = np.abs(yf.mean(0) - np.array(rtn(mx.array(x))).reshape(-1, 16).mean(0))
    shift_mixed = np.abs(yf.mean(0) - np.array(mixed(mx.array(x))).reshape(-1, 16).mean(0))
    assert shift_rtn.max() > 1e-2
    assert shift_mixed.max() < 1e-4 * max(1.0, float(np.abs(yf).mean()))
    method = qconfig["method"]
    assert method["name"] == "per-layer" and method["layers"] == {"conv1": "rtn", "conv2": "gptq+bc"}
    assert method["rtn_layers"] == [] and report.bias_added == ("conv2",)
    fresh = build(TwoConvs, seed=5)
    apply_quant_config(fresh, qconfig)
    fresh.load_weights(_flat(mixed), strict=True)
    np.testing.assert_array_equal(np.array(fresh(mx.array(x))), np.array(mixed(mx.array(x))))


def test_per_layer_methods_check_names_and_calibration():
    recipe = resolve_recipe("int4")
    with pytest.raises(UserError, match="unknown quantization method"):
        quantize_with_method(build(TwoConvs), recipe, {"conv1": "obq"}, images(2, 8, 8, 8))
    with pytest.raises(UserError, match="needs calibration"):
        quantize_with_method(build(TwoConvs), recipe, {"conv1": "gptq"}, None)
    # RTN everywhere needs no images, and is quantize_model's model.
    m, r = build(TwoConvs), build(TwoConvs)
    quantize_with_method(m, recipe, {"conv1": "rtn"}, None)
    quantize_model(r, recipe)
    x = mx.array(images(2, 8, 8, 8))
    np.testing.assert_array_equal(np.array(m(x)), np.array(r(x)))


# -- sensitivity per (layer, format, method) ------------------------------------------------------


def test_method_rows_are_that_layer_alone_quantized_by_that_method():
    b = tiny_bundle()
    cal = LabelledImages("random", batch(24, seed=7), np.arange(24) % 4)
    specs = [parse_spec("int3"), parse_spec("int8")]
    report = analyze_sensitivity_methods(b, specs, ("gptq+bc", "rtn"), cal)
    assert report.methods == ("rtn", "gptq+bc")
    assert len(report.rows) == 6 * 2 * 2
    plain = analyze_sensitivity(b, specs, cal)
    for r in plain.rows:  # the RTN rows are the RTN analysis's
        assert report.row(r.path, r.format, "rtn").kl == pytest.approx(r.kl, rel=1e-6, abs=1e-9)
    # Reference for a method row: the whole-model method run with every other layer kept float.
    ref = b.predict_logits(cal.x)
    for path in ("pw.conv", "head"):
        alone = tiny_bundle()
        recipe = make_recipe("fp32", overrides=[(path, "int3")], fold_bn=True)
        alone.quantization, _ = quantize_with_method(
            alone.model, recipe, "gptq+bc", cal.x, input_shape=alone.input_shape()
        )
        kl = _kl(ref, alone.predict_logits(cal.x))
        assert report.row(path, "int3", "gptq+bc").kl == pytest.approx(kl, rel=1e-3, abs=1e-7)


# -- the search --------------------------------------------------------------------------------


CANDIDATES = ("int2", "int3", "int4", "int8")


def test_rtn_only_is_the_format_search_of_the_rtn_report():
    b = tiny_bundle()
    cal = LabelledImages("random", batch(24, seed=7), np.arange(24) % 4)
    cands = ("int2", "int4", "int8")
    res = autoquant(b, Budget("bpw", 5.0), cal, candidates=cands, methods=("rtn",))
    assert set(dict(res.methods).values()) == {"rtn"} and not res.calibrated
    # Reference: brute force over the plain RTN analysis (3^6 assignments).
    report = analyze_sensitivity(b, [parse_spec(c) for c in cands], cal)
    paths = [i.path for i in report.layers]
    target = 5.0 * res.params / 8
    best = min(
        (sum(report.row(p, f).kl for p, f in zip(paths, pick, strict=True)), pick)
        for pick in itertools.product(cands, repeat=len(paths))
        if sum(report.row(p, f).bytes for p, f in zip(paths, pick, strict=True)) + report.other_bytes <= target
    )
    assert res.assignment == tuple(zip(paths, best[1], strict=True))
    # And the model is quantize_model's (no method entry), as before methods existed.
    variant = build_variant(b, res.recipe, res.methods, cal)
    assert "method" not in variant.quantization
    assert _kl(b.predict_logits(cal.x), variant.predict_logits(cal.x)) == pytest.approx(res.measured_kl, rel=1e-3)


def test_methods_search_beats_rtn_at_the_same_budget_and_the_bundle_reloads(tmp_path):
    b = load_bundle("default")
    cal = load_images(b, "default-val", 32)
    budget = Budget("bpw", 4.0)
    both = autoquant(b, budget, cal, candidates=CANDIDATES, methods=("rtn", "gptq+bc"))
    assert both.calibrated and both.sensitivity.methods == ("rtn", "gptq+bc")
    # The RTN-only search reuses the report's RTN rows (those of analyze_sensitivity: tested above).
    rtn = autoquant(b, budget, cal, candidates=CANDIDATES, methods=("rtn",), report=both.sensitivity)
    assert rtn.sensitivity is both.sensitivity and not rtn.calibrated
    rows = both.sensitivity
    paths = [i.path for i in rows.layers]
    better = [p for p in paths if rows.row(p, "int3", "gptq+bc").kl < rows.row(p, "int3", "rtn").kl]
    assert len(better) > len(paths) / 2, better
    # The knapsack's costs: each (layer, format) at its least-KL method.
    for (p, f), (_, m) in zip(both.assignment, both.methods, strict=True):
        assert rows.row(p, f, m).kl == min(rows.row(p, f, k).kl for k in rows.methods)
    # Real measurement on held-out images: both within the budget's bytes, the method search no worse.
    held = load_images(b, "default", 128, seed=1)
    ref = b.predict_logits(held.x)
    v_rtn = build_variant(b, rtn.recipe, rtn.methods, cal)
    v_both = build_variant(b, both.recipe, both.methods, cal)
    target = 4.0 * both.params / 8
    assert both.bytes <= target and rtn.bytes <= target
    kl_rtn, kl_both = _kl(ref, v_rtn.predict_logits(held.x)), _kl(ref, v_both.predict_logits(held.x))
    assert kl_both <= kl_rtn, (kl_both, kl_rtn)
    assert both.measured_kl <= rtn.measured_kl
    # The bundle records each layer's method and reloads computing the same logits.
    v_both.name = "aq-methods"
    v_both.save(tmp_path / "aq")
    again = load_bundle(tmp_path / "aq")
    assert again.quantization["method"]["name"] == "per-layer"
    assert again.quantization["method"]["layers"] == dict(both.methods)
    np.testing.assert_array_equal(again.predict_logits(held.x), v_both.predict_logits(held.x))
    np.testing.assert_array_equal(logits_of(again.model, held.x), logits_of(v_both.model, held.x))


def test_fisher_cannot_rank_methods():
    b = tiny_bundle()
    cal = LabelledImages("random", batch(8, seed=7), np.arange(8) % 4)
    with pytest.raises(UserError, match="Fisher sensitivity cannot rank methods"):
        autoquant(
            b, Budget("bpw", 5.0), cal, candidates=("int4", "int8"), methods=("rtn", "gptq"), sensitivity="fisher"
        )
    with pytest.raises(UserError, match="unknown quantization method"):
        autoquant(b, Budget("bpw", 5.0), cal, candidates=("int4", "int8"), methods=("rtn", "obq"))
