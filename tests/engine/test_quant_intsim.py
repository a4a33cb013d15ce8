"""Full-integer simulation against ONNX Runtime's own static quantization (QDQ, per-channel int8)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from engine.core.errors import UserError  # noqa: E402
from engine.image.quant.intsim import (  # noqa: E402
    FullIntModel,
    IntSimSettings,
    calibrate_fullint,
    float_model,
    layer_errors,
    logits,
    prepare,
)
from engine.image.quant.intsim_math import fake_quant_np, qparams, quantize_weight  # noqa: E402
from engine.image.quant.observers import ObserverSettings, TensorObserver  # noqa: E402
from tests.engine import intsim_reference as ref  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
N_CALIB, N_EVAL = 8, 128


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def compare(model, onnx_path, tmp_path, observer: str, act_type: str = "uint8"):
    """(ORT error vs float, app error vs float, mean |app - ORT|, top-1 agreement app/ORT)."""
    calib, _ = ref.class_images(N_CALIB, 1)
    x, _ = ref.class_images(N_EVAL, 2)
    q_path = tmp_path / f"q_{observer}.onnx"
    ref.ort_quantize(onnx_path, q_path, calib, observer, act_type)
    ort_float, ort_int = ref.ort_logits(onnx_path, x), ref.ort_logits(q_path, x)
    cal = calibrate_fullint(model, nhwc(calib), IntSimSettings(ObserverSettings(observer), act_type, N_CALIB))
    app_float, app_int = logits(float_model(cal), nhwc(x)), logits(FullIntModel(cal), nhwc(x))
    np.testing.assert_allclose(app_float, ort_float, atol=1e-3 * max(1.0, np.abs(ort_float).max()))
    ort_err = float(np.mean(np.abs(ort_int - ort_float)))
    app_err = float(np.mean(np.abs(app_int - app_float)))
    return ort_err, app_err, float(np.mean(np.abs(app_int - ort_int))), ref.agreement(app_int, ort_int)


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    from engine.image.importers.checkpoint import import_checkpoint

    d = tmp_path_factory.mktemp("mnv2")
    net = ref.mobilenet_v2(width=1.0)  # at width 0.5 random weights leave percentile at 97.7 % agreement
    torch.save(net.state_dict(), d / "mnv2.pth")
    ref.export_onnx(net, d / "mnv2.onnx")
    return import_checkpoint("mobilenet_v2", d / "mnv2.pth").model, d / "mnv2.onnx"


@pytest.fixture(scope="module")
def dense_block(tmp_path_factory):
    from engine.image.importers.onnx_graph import import_onnx

    d = tmp_path_factory.mktemp("dense")
    ref.export_onnx(ref.dense_block_net(), d / "dense.onnx")
    return import_onnx(d / "dense.onnx").model, d / "dense.onnx"


@pytest.mark.parametrize("observer", ["minmax", "percentile"])
def test_mobilenet_v2_matches_onnxruntime_int8(mobilenet, tmp_path, observer):
    model, onnx_path = mobilenet
    ort_err, app_err, gap, agree = compare(model, onnx_path, tmp_path, observer)
    assert ort_err > 0.01  # the quantization is real
    assert abs(app_err - ort_err) <= 0.10 * ort_err, (app_err, ort_err)
    assert agree >= 0.98
    assert gap < 0.4 * ort_err  # the simulation is far closer to ORT-int8 than float is


@pytest.mark.parametrize("observer, act_type", [("minmax", "uint8"), ("entropy", "int8")])
def test_dense_block_matches_onnxruntime_int8(dense_block, tmp_path, observer, act_type):
    model, onnx_path = dense_block
    ort_err, app_err, gap, agree = compare(model, onnx_path, tmp_path, observer, act_type)
    assert ort_err > 0.01
    assert abs(app_err - ort_err) <= 0.10 * ort_err, (app_err, ort_err)
    assert agree >= 0.98
    assert gap < 0.4 * ort_err


def test_plan_quantizes_adds_concats_and_pools(mobilenet, dense_block):
    cal = calibrate_fullint(mobilenet[0], nhwc(ref.class_images(2, 1)[0]), IntSimSettings(calib=2))
    ops = {t.op for t in cal.tensors}
    assert {"input", "add", "act", "global_pool", "linear"} <= ops
    assert "conv" in ops  # projection convs (no activation) keep their own tensor
    relu_producers = {op.inputs[0] for op in cal.graph.ops if op.op == "act"}
    assert not relu_producers & {t.tensor for t in cal.tensors}  # ReLU6 fused: only its output is int8
    cal = calibrate_fullint(dense_block[0], nhwc(ref.class_images(2, 1)[0]), IntSimSettings(calib=2))
    assert {"concat", "global_pool"} <= {t.op for t in cal.tensors}
    assert any(op.op == "pool" for op in cal.graph.ops) and cal.plan.same  # avg pool requantizes


def test_observers_match_onnxruntime_calibrators():
    from onnxruntime.quantization.calibrate import HistogramCollector

    rng = np.random.default_rng(0)
    batches = [rng.standard_t(3, (4, 7, 9)).astype(np.float32) * s for s in (0.5, 1.0, 2.0)]
    batches.append(np.maximum(batches[0], 0))
    for name, bins, symmetric in (("percentile", 2048, True), ("entropy", 128, False), ("entropy", 512, False)):
        ort = HistogramCollector(name, symmetric, bins, 128, 99.999, "same")
        ort.collect({"t": list(batches)})
        want = ort.compute_collection_result()["t"][:2]
        obs = TensorObserver(ObserverSettings(name, num_bins=bins))
        for b in batches:
            obs.see_range(b)
        for b in batches:
            obs.see_histogram(b)
        np.testing.assert_allclose(obs.range(), [float(want[0]), float(want[1])], rtol=1e-6)


def test_scales_rounding_and_weights_match_onnxruntime():
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import compute_scale_zp, quantize_data, quantize_nparray

    for lo, hi, qtype, name in ((-1.3, 4.7, TensorProto.UINT8, "uint8"), (0.0, 6.0, TensorProto.INT8, "int8")):
        zp, scale = compute_scale_zp(np.float32(lo), np.float32(hi), *_range(qtype))
        assert qparams(lo, hi, name) == (float(scale), int(zp))
        x = (np.arange(-600, 600, dtype=np.float32) + 0.5) * np.float32(scale)  # ties: half to even
        want = (quantize_nparray(qtype, x, scale, zp).astype(np.float32) - zp) * scale
        np.testing.assert_array_equal(fake_quant_np(x, float(scale), int(zp), name), want)
    w = np.random.default_rng(1).standard_normal((6, 3, 3, 4)).astype(np.float32)
    deq, scales = quantize_weight(w)
    for c in range(6):
        _, s, q = quantize_data(w[c].ravel(), TensorProto.INT8, True)
        np.testing.assert_allclose(scales[c], s)
        np.testing.assert_array_equal(deq[c].ravel(), q.astype(np.float32) * s)


def _range(qtype):
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    return get_qmin_qmax_for_qType(qtype)


def test_native_densenet_matches_onnxruntime_int8(tmp_path):
    """torchvision DenseNet imported as the app's DenseNet: pre-activation BatchNorms stay unfused (int8 gamma,
    int32 beta in ORT's graph), every layer reads a concatenation."""
    from engine.image.importers.checkpoint import import_checkpoint
    from tests.torchvision_ref import torchvision

    torch.manual_seed(0)
    cfg = {"growth_rate": 8, "block_config": (2, 2), "num_init_features": 16, "bn_size": 2}
    net = ref.settle(torchvision.models.DenseNet(num_classes=ref.CLASSES, **cfg), affine=True)
    torch.save(net.state_dict(), tmp_path / "d.pth")
    ref.export_onnx(net, tmp_path / "d.onnx")
    model = import_checkpoint("densenet121", tmp_path / "d.pth", arch_overrides=cfg).model
    ort_err, app_err, gap, agree = compare(model, tmp_path / "d.onnx", tmp_path, "minmax")
    assert abs(app_err - ort_err) <= 0.10 * ort_err, (app_err, ort_err)
    assert agree >= 0.98
    # ORT's fused integer kernels and its own unfused QDQ graph differ by about half its error here.
    assert gap < ort_err


def test_layer_report_ranks_a_damaged_tensor_first(dense_block):
    from dataclasses import replace

    x = nhwc(ref.class_images(8, 1)[0])
    cal = calibrate_fullint(dense_block[0], x, IntSimSettings(calib=8))
    rows = layer_errors(cal, x)
    assert len(rows) == len(cal.tensors) + len(cal.plan.same) + sum(op.op in ("conv", "linear") for op in cal.graph.ops)
    errs = [r.isolated_logit_error for r in rows]
    assert errs == sorted(errs, reverse=True) and min(errs) >= 0
    victim = next(t for t in cal.tensors if t.op == "concat")
    bad = tuple(replace(t, scale=t.scale * 40) if t is victim else t for t in cal.tensors)
    assert layer_errors(replace(cal, tensors=bad), x)[0].tensor == victim.tensor


def test_bad_settings_and_models_are_user_errors(mobilenet):
    from engine.image.models.registry import get

    x = nhwc(ref.class_images(2, 1)[0])
    with pytest.raises(UserError, match="observer"):
        calibrate_fullint(mobilenet[0], x, IntSimSettings(ObserverSettings("kl")))
    with pytest.raises(UserError, match="uint8 or int8"):
        calibrate_fullint(mobilenet[0], x, IntSimSettings(act_type="int4"))
    with pytest.raises(UserError, match="no calibration image"):
        calibrate_fullint(mobilenet[0], x[:0], IntSimSettings())
    arch = get("resnet18")
    with pytest.raises(UserError, match="MobileNetV2 and DenseNet"):
        prepare(arch.build(arch.default_config(num_classes=3)))


def test_mse_observer_beats_minmax_on_a_heavy_tail():
    """ORT has no MSE calibrator: the app's own clips a heavy tail where that lowers the squared error."""
    x = np.random.default_rng(3).standard_t(2, 20000).astype(np.float32)
    ranges = {}
    for name in ("minmax", "mse"):
        obs = TensorObserver(ObserverSettings(name))
        obs.see_range(x)
        if obs.s.needs_histogram:
            obs.see_histogram(x)
        ranges[name] = obs.range()
    lo, hi = ranges["mse"]
    assert ranges["minmax"][0] < lo < 0 < hi < ranges["minmax"][1]

    def mse(r):
        s, z = qparams(*r)
        return float(np.mean((fake_quant_np(x, s, z) - x) ** 2))

    assert mse(ranges["mse"]) < 0.97 * mse(ranges["minmax"])
    assert mse(ranges["mse"]) < mse((lo * 0.5, hi * 0.5))  # and does not clip too much either
