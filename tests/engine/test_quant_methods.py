"""Calibrated quantization methods (GPTQ, bias correction, AdaRound) against references and RTN."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine.core.errors import Cancelled, UserError
from engine.image.quant.apply import apply_quant_config, quantize_model
from engine.image.quant.layers import QUANTIZED_TYPES
from engine.image.quant.methods import METHODS, MethodSettings, quantize_with_method
from engine.image.quant.methods.adaround import adaround_matrix
from engine.image.quant.methods.affine import group_params, pack_codes, searched_group_params, unpack_codes
from engine.image.quant.methods.gptq import gptq_depthwise, gptq_matrix, rtn_matrix
from engine.image.quant.recipes import resolve_recipe
from tests.engine.gptq_reference import gptq_depthwise_reference, gptq_reference, mlx_affine_params

FAST = MethodSettings(adaround_iters=150)


def correlated(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Inputs with a strongly non-isotropic covariance and a non-zero mean (where error feedback matters)."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d) + np.eye(d)
    return (rng.standard_normal((n, d)) @ mix * rng.uniform(0.2, 2.0, d) + 0.3).astype(np.float32)


class OneLinear(nn.Module):
    def __init__(self, d_in=128, d_out=48):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)

    def __call__(self, x):
        return self.fc(x)


class OneConv(nn.Module):
    def __init__(self, c_in=16, c_out=24, bias=True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)

    def __call__(self, x):
        return self.conv(x)


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(8, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 16, 1, bias=False)

    def __call__(self, x):
        return self.conv2(nn.relu(self.conv1(x)))


def build(cls, seed=0, **kw):
    mx.random.seed(seed)
    m = cls(**kw)
    m.eval()
    mx.eval(m.parameters())
    return m


def images(n, h, w, c, seed=0):
    flat = correlated(n * h * w, c, seed)
    return flat.reshape(n, h, w, c)


def out_error(model_f, model_q, x) -> float:
    return float(np.mean((np.array(model_f(mx.array(x))) - np.array(model_q(mx.array(x)))) ** 2))


def quantized_layers(model):
    return [(p, m) for p, m in model.named_modules() if isinstance(m, QUANTIZED_TYPES)]


# -- MLX's format, from the outside -----------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
def test_codes_pack_exactly_as_mlx_quantize(bits):
    w = np.random.default_rng(bits).standard_normal((6, 128)).astype(np.float32)
    wq, s, b = mx.quantize(mx.array(w), group_size=32, bits=bits)
    dq = np.array(mx.dequantize(wq, s, b, group_size=32, bits=bits))
    codes = np.rint((dq - np.repeat(np.array(b), 32, 1)) / np.repeat(np.array(s), 32, 1)).astype(np.int64)
    assert np.array_equal(unpack_codes(np.array(wq), bits, 128), codes)
    assert np.array_equal(pack_codes(codes, bits), np.array(wq))


def test_reference_group_rule_is_mlx_quantize():
    w = (np.random.default_rng(1).standard_normal((16, 256)) + 0.5).astype(np.float32)
    for bits in (2, 3, 4, 8):
        _, s, b = mx.quantize(mx.array(w), group_size=64, bits=bits)
        rs, rb = mlx_affine_params(w.reshape(16, 4, 64), bits)
        assert np.array_equal(np.array(s), rs) and np.array_equal(np.array(b), rb)


# -- GPTQ against the NumPy reference ----------------------------------------------------------


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("bits,gs", [(3, 32), (4, 64), (2, 32)])
def test_gptq_matches_numpy_reference(bits, gs, act_order):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((12, 128)).astype(np.float32)
    x = correlated(512, 128, seed=2)
    x[:, 5] = 0.0  # a dead input: the weight column is dropped, as in the paper's code
    h = x.astype(np.float64).T @ x
    got = gptq_matrix(w, h, gs, bits, "float32", act_order=act_order, block_size=64)
    codes, deq = gptq_reference(w, h, gs, bits, act_order=act_order)
    assert np.array_equal(got.codes, codes)
    np.testing.assert_allclose(got.weight, deq, rtol=0, atol=1e-5)


def test_gptq_depthwise_matches_numpy_reference():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((9, 64)).astype(np.float32)
    mix = rng.standard_normal((9, 9)) / 3 + np.eye(9)  # neighbouring taps correlate
    p = np.einsum("tu,muc->mtc", mix, rng.standard_normal((400, 9, 64))) + rng.standard_normal((400, 1, 64))
    hess = np.einsum("mtc,muc->ctu", p, p)
    got = gptq_depthwise(w, hess, 32, 3, "float32")
    codes, deq = gptq_depthwise_reference(w, hess, 32, 3)
    assert np.array_equal(got.codes, codes)
    np.testing.assert_allclose(got.weight, deq, rtol=0, atol=1e-5)


def test_method_weights_are_what_mlx_dequantize_of_the_stored_triple_gives():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 96)).astype(np.float32)
    x = correlated(300, 96)
    h = x.astype(np.float64).T @ x
    for qm in (gptq_matrix(w, h, 32, 3, "float16"), adaround_matrix(w, h, 32, 3, "float16", iters=50)):
        wq = mx.array(pack_codes(qm.codes, 3))
        dq = mx.dequantize(wq, mx.array(qm.scales), mx.array(qm.biases), group_size=32, bits=3)
        np.testing.assert_array_equal(np.array(dq), qm.weight)
        # float16 scale storage: the parameters are float16 values already
        assert np.array_equal(qm.scales.astype(np.float16).astype(np.float32), qm.scales)


# -- single layers: GPTQ beats RTN on the calibration data -------------------------------------


@pytest.mark.parametrize("fmt", ["int3-g32", "int4-g64", "int2-g32"])
def test_gptq_linear_reduces_output_error_vs_rtn(fmt):
    x = correlated(256, 128)
    f, r, g = build(OneLinear), build(OneLinear), build(OneLinear)
    recipe = resolve_recipe(fmt)
    quantize_model(r, recipe)
    qconfig, report = quantize_with_method(g, recipe, "gptq", x)
    assert qconfig["layers"]["fc"]["mode"] == "affine" and report.rtn_layers == ()
    e_rtn, e_gptq = out_error(f, r, x), out_error(f, g, x)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)


@pytest.mark.parametrize("fmt", ["int3-g32", "int4-g64"])
def test_gptq_conv_reduces_output_error_vs_rtn(fmt):
    x = images(24, 8, 8, 16)
    f, r, g = build(OneConv), build(OneConv), build(OneConv)
    recipe = resolve_recipe(fmt)
    quantize_model(r, recipe, input_shape=(8, 8, 16))
    quantize_with_method(g, recipe, "gptq", x, input_shape=(8, 8, 16))
    e_rtn, e_gptq = out_error(f, r, x), out_error(f, g, x)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)


# -- bias correction ---------------------------------------------------------------------------


def test_bias_correction_zeroes_the_mean_output_shift():
    x = images(32, 8, 8, 8, seed=1)
    f, g, bc = build(TwoConvs), build(TwoConvs), build(TwoConvs)
    recipe = resolve_recipe("int2-g32")
    shape = (8, 8, 8)
    quantize_with_method(g, recipe, "gptq", x, input_shape=shape)
    qconfig, report = quantize_with_method(bc, recipe, "gptq+bc", x, input_shape=shape)
    yf = np.array(f(mx.array(x))).reshape(-1, 16)
    shift_gptq = np.abs(yf.mean(0) - np.array(g(mx.array(x))).reshape(-1, 16).mean(0))
    shift_bc = np.abs(yf.mean(0) - np.array(bc(mx.array(x))).reshape(-1, 16).mean(0))
    assert shift_gptq.max() > 1e-2  # there was a shift to correct
    assert shift_bc.max() < 1e-4 * max(1.0, float(np.abs(yf).mean()))
    # conv2 had no bias: it got one, and the config says so, so the model reloads exactly
    assert report.bias_added == ("conv2",) and qconfig["layers"]["conv2"]["bias"] is True
    fresh = build(TwoConvs, seed=5)
    apply_quant_config(fresh, qconfig)
    fresh.load_weights(list(dict(_flat(bc)).items()), strict=True)
    np.testing.assert_array_equal(np.array(fresh(mx.array(x))), np.array(bc(mx.array(x))))


def _flat(model):
    from mlx.utils import tree_flatten

    return tree_flatten(model.parameters())


# -- AdaRound ----------------------------------------------------------------------------------


def test_adaround_codes_within_one_of_rtn_and_lower_error():
    x = correlated(256, 128)
    f, r, a = build(OneLinear), build(OneLinear), build(OneLinear)
    recipe = resolve_recipe("int3-g32")
    quantize_model(r, recipe)
    settings = MethodSettings(adaround_iters=300, adaround_clip_search=False)
    quantize_with_method(a, recipe, "adaround", x, settings=settings)
    np.testing.assert_array_equal(np.array(a.fc.scales), np.array(r.fc.scales))  # RTN's own grid
    rtn_codes = unpack_codes(np.array(r.fc.weight), 3, 128)
    ada_codes = unpack_codes(np.array(a.fc.weight), 3, 128)
    diff = np.abs(ada_codes - rtn_codes)
    assert diff.max() <= 1 and diff.sum() > 0
    assert out_error(f, a, x) < 0.9 * out_error(f, r, x)


def test_adaround_with_searched_ranges_rounds_within_one_of_nearest_on_its_own_grid():
    x = correlated(256, 128)
    f, r, a = build(OneLinear), build(OneLinear), build(OneLinear)
    recipe = resolve_recipe("int3-g32")
    quantize_model(r, recipe)
    quantize_with_method(a, recipe, "adaround", x, settings=MethodSettings(adaround_iters=300))
    s, b = np.repeat(np.array(a.fc.scales), 32, 1), np.repeat(np.array(a.fc.biases), 32, 1)
    nearest = np.clip(np.rint((np.array(f.fc.weight, dtype=np.float64) - b) / s), 0, 7)
    codes = unpack_codes(np.array(a.fc.weight), 3, 128)
    assert np.abs(codes - nearest).max() <= 1
    assert not np.array_equal(np.array(a.fc.scales), np.array(r.fc.scales))  # the ranges were searched
    assert out_error(f, a, x) < 0.9 * out_error(f, r, x)


# -- searched group ranges ---------------------------------------------------------------------


def test_searched_group_params_at_ratio_one_are_mlx_quantize_and_never_lose_to_it():
    rng = np.random.default_rng(5)
    w = rng.standard_t(3, (16, 256)).astype(np.float32)  # heavy tails: clipping pays
    weight = rng.uniform(0.1, 2.0, (1, 256))
    s1, b1 = searched_group_params(w, 64, 3, "float32", weight, grid=(1.0,))
    s0, b0 = group_params(w, 64, 3, "float32")
    assert np.array_equal(s1, s0) and np.array_equal(b1, b0)

    def weighted_error(s, b):
        se, be = np.repeat(s, 64, 1).astype(np.float64), np.repeat(b, 64, 1).astype(np.float64)
        q = np.clip(np.rint((w - be) / se), 0, 7)
        return ((w - (se * q + be)) ** 2 * weight).reshape(16, 4, 64).sum(-1)

    s, b = searched_group_params(w, 64, 3, "float32", weight)
    err, err0 = weighted_error(s, b), weighted_error(s0, b0)
    assert np.all(err <= err0 + 1e-9)
    assert err.sum() < 0.9 * err0.sum()
    assert np.any(s < s0)  # some ranges shrank


def test_gptq_with_searched_ranges_stays_on_its_grid():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((12, 128)).astype(np.float32)
    x = correlated(512, 128, seed=3)
    got = gptq_matrix(w, x.astype(np.float64).T @ x, 32, 3, "float32", clip_search=True)
    grid = np.repeat(got.scales, 32, 1) * got.codes + np.repeat(got.biases, 32, 1)
    np.testing.assert_allclose(got.weight, grid, atol=1e-6)
    assert got.codes.min() >= 0 and got.codes.max() <= 7


def test_adaround_low_rank_error_equals_the_full_hessian_form(monkeypatch):
    """A deep layer's H has rank <= its calibration patches; ||dW L||^2 is the same error for less work."""
    import engine.image.quant.methods.adaround as ada

    rng = np.random.default_rng(9)
    x = correlated(96, 512)  # 96 patches, 512 inputs: rank 96
    h = x.astype(np.float64).T @ x
    factor = ada.low_rank_factor(h)
    assert factor is not None and factor.shape == (512, 96)
    delta = rng.standard_normal((16, 512))
    full = np.einsum("ij,jk,ik->", delta, h, delta)
    np.testing.assert_allclose(np.sum((delta @ factor) ** 2), full, rtol=1e-6)
    assert ada.low_rank_factor(correlated(2000, 64).T @ correlated(2000, 64)) is None  # full rank: no gain

    w = rng.standard_normal((16, 512)).astype(np.float32)
    fast = adaround_matrix(w, h, 32, 3, "float32", iters=60)
    monkeypatch.setattr(ada, "low_rank_factor", lambda h: None)  # the full-Hessian path
    slow = adaround_matrix(w, h, 32, 3, "float32", iters=60)
    assert np.mean(fast.codes == slow.codes) > 0.99  # same optimisation, float32 rounding apart


def test_adaround_matrix_codes_are_floor_or_ceil():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    x = correlated(200, 64)
    h = x.astype(np.float64).T @ x
    qm = adaround_matrix(w, h, 32, 2, "float32", iters=80)
    rtn = rtn_matrix(w, 32, 2, "float32")
    assert np.abs(qm.codes - rtn.codes).max() <= 1
    np.testing.assert_array_equal(qm.scales, rtn.scales)


# -- whole models: every produced layer is on its own grid, and reloads exactly ----------------


def tiny_mobilenet():
    from engine.image.models import registry

    spec = registry.get("mobilenet_v2")
    cfg = spec.default_config(num_classes=4, width_mult=0.25)
    mx.random.seed(0)
    model = spec.build(cfg)
    model.eval()
    mx.eval(model.parameters())
    return model, cfg


@pytest.mark.parametrize("method", ["gptq", "gptq+bc", "adaround", "adaround+bc"])
def test_every_layer_of_a_method_model_is_on_its_grid_and_reloads(method):
    from engine.image.models import registry

    model, cfg = tiny_mobilenet()
    x = np.random.default_rng(0).uniform(0, 1, (16, 32, 32, 3)).astype(np.float32)
    steps = []
    settings = MethodSettings(adaround_iters=20)
    qconfig, report = quantize_with_method(
        model,
        resolve_recipe("int4-g32"),
        method,
        x,
        "rand16",
        settings,
        lambda f, m: steps.append(f),
        None,
        (32, 32, 3),
    )
    assert qconfig["method"]["name"] == method and qconfig["method"]["calibration_size"] == 16
    assert report.rtn_layers == () and steps[-1] == pytest.approx(1.0) and report.seconds > 0
    kinds = {e["type"] for e in qconfig["layers"].values()}
    assert kinds == {"conv", "depthwise", "linear"}
    layers = quantized_layers(model)
    assert len(layers) == len(qconfig["layers"])
    for path, m in layers:
        gs, bits = m.group_size, m.bits
        s, b = np.array(m.scales), np.array(m.biases)
        cols = s.shape[1] * gs
        codes = unpack_codes(np.array(m.weight), bits, cols)
        assert codes.min() >= 0 and codes.max() <= (1 << bits) - 1, path
        dq = np.array(mx.dequantize(m.weight, m.scales, m.biases, group_size=gs, bits=bits))
        grid = (np.repeat(s, gs, 1) * codes.astype(np.float32) + np.repeat(b, gs, 1)).astype(np.float32)
        np.testing.assert_array_equal(dq, grid, err_msg=path)
    fresh = registry.get("mobilenet_v2").build(cfg)
    apply_quant_config(fresh, qconfig)
    fresh.load_weights(_flat(model), strict=True)
    fresh.eval()
    np.testing.assert_array_equal(np.array(fresh(mx.array(x))), np.array(model(mx.array(x))))


def test_unknown_method_missing_calibration_and_cancel():
    with pytest.raises(UserError, match="unknown quantization method"):
        quantize_with_method(build(OneLinear), resolve_recipe("int4"), "obq", correlated(8, 128))
    with pytest.raises(UserError, match="needs calibration"):
        quantize_with_method(build(OneLinear), resolve_recipe("int4"), "gptq", np.zeros((0, 128), np.float32))
    with pytest.raises(Cancelled):
        quantize_with_method(
            build(OneLinear), resolve_recipe("int4"), "gptq", correlated(8, 128), should_stop=lambda: True
        )
    assert set(METHODS) == {"rtn", "gptq", "gptq+bc", "adaround", "adaround+bc"}


def test_mixed_recipe_and_float_scaled_formats_fall_back_to_rtn_and_say_so():
    from engine.image.quant.formats import supported_modes

    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
    model, _ = tiny_mobilenet()
    qconfig, report = quantize_with_method(model, resolve_recipe("mixed-4-8"), "gptq", x, input_shape=(32, 32, 3))
    bits = {e.get("bits") for e in qconfig["layers"].values()}
    assert {4, 8} <= bits and report.rtn_layers == ()
    if "mxfp4" not in supported_modes():
        pytest.skip("this MLX has no mxfp4")
    model, _ = tiny_mobilenet()
    qconfig, report = quantize_with_method(model, resolve_recipe("mxfp4"), "gptq", x, input_shape=(32, 32, 3))
    mx_layers = [p for p, e in qconfig["layers"].items() if e.get("mode") == "mxfp4"]
    assert mx_layers and set(report.rtn_layers) == set(mx_layers)
    assert qconfig["method"]["rtn_layers"] == list(report.rtn_layers)
    assert np.isfinite(np.array(model(mx.array(x)))).all()
