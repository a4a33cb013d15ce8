"""Fine-tuning that starts from a quantized (GPTQ, AdaRound, RTN) model and keeps its grid."""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import numpy as np
import pytest

from engine.core.errors import UserError
from engine.image.bundle import load_bundle
from engine.image.quant.apply import quantize_model
from engine.image.quant.calibration import LabelledImages, load_images
from engine.image.quant.formats import LayerSpec, supported_modes
from engine.image.quant.from_quantized import float_student, grid_fake_weight, stored_recipe
from engine.image.quant.hooks import hooked
from engine.image.quant.layers import QUANTIZED_TYPES
from engine.image.quant.methods import MethodSettings, quantize_with_method
from engine.image.quant.methods.affine import unpack_codes
from engine.image.quant.recipes import make_recipe, resolve_recipe
from engine.image.quant.recover import FinetuneSettings, _student_hooks, fake_quant_plan, finetune
from tests.engine.quant_helpers import batch, tiny_bundle


def quantized_copy(bundle, recipe, method: str, calib: np.ndarray, iters: int = 30):
    """``bundle`` quantized with ``method`` (a fresh copy; the config as QuantizeJob records it)."""
    q = bundle.clone()
    recipe = resolve_recipe(recipe)
    if method == "rtn":
        q.quantization = quantize_model(q.model, recipe, input_shape=q.input_shape())
    else:
        settings = MethodSettings(adaround_iters=iters)
        q.quantization, _ = quantize_with_method(
            q.model, recipe, method, calib, settings=settings, input_shape=q.input_shape()
        )
    q.name = f"{bundle.name}-{recipe.name}-{method}"
    q.source = {"kind": "quantized", "parent": str(bundle.path), "method": method}
    return q


def student_logits(q, x: np.ndarray) -> np.ndarray:
    """What the fake-quantized student built from ``q`` computes before any training step."""
    student, grid, plan = float_student(q)
    fakes = {p: partial(grid_fake_weight, layer=layer) for p, layer in grid.items()}
    with hooked(student.model, _student_hooks(student.model, plan, stored_recipe(q), set(), {}, fakes)):
        out = student.model(mx.array(x))
        mx.eval(out)
    return np.array(out)


def cross_entropy(bundle, images: LabelledImages) -> float:
    logits = bundle.predict_logits(images.x).astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    return float(-logp[np.arange(len(logp)), images.y].mean())


def layers_of(bundle) -> dict:
    return {p: m for p, m in bundle.model.named_modules() if isinstance(m, QUANTIZED_TYPES)}


@pytest.fixture(scope="module")
def default_adaround():
    """The shipped default model at int3 with AdaRound (searched ranges: a grid that is not min/max)."""
    b = load_bundle("default")
    train = load_images(b, "default-val", 128, seed=0)
    return b, quantized_copy(b, "int3", "adaround", train.x[:32]), train


@pytest.fixture(scope="module")
def tuned(default_adaround):
    _, q, train = default_adaround
    settings = FinetuneSettings(epochs=1, batch_size=32, lr=3e-4, augment=False, max_steps=4)
    out, res = finetune(q, train, train, settings)
    return out, res


def test_student_from_adaround_computes_what_the_adaround_model_computes(default_adaround):
    _, q, train = default_adaround
    x = train.x[:64]
    np.testing.assert_allclose(student_logits(q, x), q.predict_logits(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["gptq+bc", "rtn"])
def test_student_step_zero_is_exact_for_gptq_with_added_biases_and_rtn(method):
    """Unfolded BatchNorm: bias correction gives the bias-less convs a bias, which the student must carry."""
    b = tiny_bundle()
    x = batch(16, seed=5)
    q = quantized_copy(b, make_recipe("int4-g32", fold_bn=False), method, x)
    if method == "gptq+bc":
        assert q.quantization["method"]["bias_added"]  # the case this test is for
    assert {e["type"] for e in q.quantization["layers"].values()} == {"conv", "depthwise", "linear"}
    np.testing.assert_allclose(student_logits(q, x), q.predict_logits(x), atol=1e-5, rtol=0)


def test_float_scaled_layers_start_where_the_model_is():
    """mxfp4/nvfp4 layers (RTN under every method) are re-quantized with MLX's rule, which leaves them in place."""
    modes = [m for m in ("mxfp4", "nvfp4") if m in supported_modes()]
    if not modes:
        pytest.skip("this MLX has no float-scaled formats")
    x = batch(8, seed=2)
    for mode in modes:
        q = quantized_copy(tiny_bundle(), mode, "rtn", x)
        assert any(e.get("mode") == mode for e in q.quantization["layers"].values())
        np.testing.assert_allclose(student_logits(q, x), q.predict_logits(x), atol=1e-5, rtol=0)


def test_min_max_requantization_would_leave_adaround_s_grid(default_adaround):
    """Why the grid is kept: RTN's min/max rule applied to AdaRound's weights moves them, and the logits."""
    _, q, train = default_adaround
    moved = 0
    for m in layers_of(q).values():
        w = mx.dequantize(m["weight"], m["scales"], m["biases"], group_size=m.group_size, bits=m.bits)
        wq, s, bb = mx.quantize(w, group_size=m.group_size, bits=m.bits)
        again = mx.dequantize(wq, s.astype(mx.float16).astype(mx.float32), bb.astype(mx.float16).astype(mx.float32),
                              group_size=m.group_size, bits=m.bits)  # fmt: skip
        moved += int(np.sum(np.array(again) != np.array(w)))
    assert moved > 100
    # The old QAT path (fake quantization by RTN's rule of the same recipe) on the dequantized weights:
    student, _, _ = float_student(q)
    recipe = stored_recipe(q)
    plan = fake_quant_plan(student.model, recipe, q.input_shape())
    x = train.x[:64]
    with hooked(student.model, _student_hooks(student.model, plan, recipe, set(), {})):
        naive = np.array(student.model(mx.array(x)))
    assert np.abs(naive - q.predict_logits(x)).max() > 1e-2
    assert np.abs(student_logits(q, x) - q.predict_logits(x)).max() < 1e-5


def test_finetuned_model_stays_on_the_grid_and_reloads(default_adaround, tmp_path):
    """At lr 1e-3 training moves weights across rounding boundaries (about 2,300 codes change in 4 steps)."""
    _, q, train = default_adaround
    settings = FinetuneSettings(epochs=1, batch_size=32, lr=1e-3, augment=False, max_steps=4)
    out, res = finetune(q, train, train, settings)
    assert res.steps == 4 and res.from_method == "adaround" and res.recipe == "int3"
    assert res.quantize_gap < 1e-4  # the stored codes compute what training saw
    assert res.before_accuracy == pytest.approx(np.mean(q.predict_logits(train.x).argmax(1) == train.y))
    q_layers, new_layers = layers_of(q), layers_of(out)
    assert set(q_layers) == set(new_layers) and q_layers
    changed = 0
    for path, m in new_layers.items():
        old = q_layers[path]
        gs, bits = m.group_size, m.bits
        np.testing.assert_array_equal(np.array(m.scales), np.array(old.scales), err_msg=path)  # the grid is Q's
        np.testing.assert_array_equal(np.array(m.biases), np.array(old.biases), err_msg=path)
        s, b = np.array(m.scales), np.array(m.biases)
        codes = unpack_codes(np.array(m.weight), bits, s.shape[1] * gs)
        assert codes.min() >= 0 and codes.max() <= (1 << bits) - 1, path
        dq = np.array(mx.dequantize(m.weight, m.scales, m.biases, group_size=gs, bits=bits))
        grid = (np.repeat(s, gs, 1) * codes.astype(np.float32) + np.repeat(b, gs, 1)).astype(np.float32)
        np.testing.assert_array_equal(dq, grid, err_msg=path)
        changed += int(np.sum(codes != unpack_codes(np.array(old.weight), bits, s.shape[1] * gs)))
    assert changed > 0  # training moved some weights across a rounding boundary
    assert out.quantization["layers"] == q.quantization["layers"]
    assert out.quantization["method"]["name"] == "adaround"
    assert out.quantization["finetune"]["from_method"] == "adaround" and out.quantization["finetune"]["steps"] == 4
    out.save(tmp_path / "ft")
    again = load_bundle(tmp_path / "ft")
    np.testing.assert_array_equal(again.predict_logits(train.x[:32]), out.predict_logits(train.x[:32]))


def test_finetuning_from_adaround_lowers_the_training_loss(default_adaround, tuned):
    """Measured on the stored models (not the training graph).

    4 steps at lr 3e-4: CE 0.343 -> 0.284 with no code changed (the weights start on grid points and
    must move half a step to flip; the folded biases and the head's bias do the work). At lr 1e-3
    about 2,300 codes flip in 4 steps and CE rises to 0.385: Adam moves every latent weight by about
    the learning rate, so once steps reach the grid's half-step many codes flip at once.
    """
    _, q, train = default_adaround
    out, _ = tuned
    before, after = cross_entropy(q, train), cross_entropy(out, train)
    assert after < before, (before, after)


def test_a_recipe_that_disagrees_with_the_quantized_model_is_refused(default_adaround):
    _, q, train = default_adaround
    images = LabelledImages("r", train.x[:8], train.y[:8])
    with pytest.raises(UserError, match="already quantized with int3 \\(adaround\\); recipe int4 disagrees"):
        finetune(q, images, images, FinetuneSettings(recipe="int4", max_steps=1))
    assert stored_recipe(q, "int3").to_dict() == q.quantization["recipe"]  # the same recipe named is fine
    assert LayerSpec.from_dict(q.quantization["layers"]["conv3.conv"]).bits == 3
