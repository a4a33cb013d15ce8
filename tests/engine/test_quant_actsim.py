"""Activation simulation against torch's fake quantization and hand-computed values."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

from engine.core.errors import UserError
from engine.image.quant.actsim import (
    ActSimSettings,
    _Histogram,
    calibrate,
    calibration_sweep,
    fake_quant,
    qparams,
    sim_points,
    simulated_activations,
)
from engine.image.quant.apply import quantize_model
from engine.image.quant.calibration import LabelledImages
from engine.image.quant.recipes import make_recipe
from tests.engine.quant_helpers import batch, tiny_bundle


def test_qparams_by_hand():
    scale, zp = qparams(-1.0, 3.0, 8)
    assert scale == pytest.approx(4.0 / 255)
    assert zp == -64  # round(-128 + 1 / (4/255)) = round(-64.25)
    assert qparams(0.5, 2.0, 8) == (pytest.approx(2.0 / 255), -128)  # the range is widened to contain 0


@pytest.mark.parametrize("lo,hi,bits", [(-1.0, 3.0, 8), (0.0, 6.0, 8), (-2.5, 0.7, 4)])
def test_fake_quant_equals_torch(lo, hi, bits):
    x = np.random.default_rng(0).uniform(lo - 1, hi + 1, size=2000).astype(np.float32)
    scale, zp = qparams(lo, hi, bits)
    ours = np.array(fake_quant(mx.array(x), scale, zp, bits))
    ref = torch.fake_quantize_per_tensor_affine(
        torch.from_numpy(x), scale, zp, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    ).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert ours[np.argmin(np.abs(x))] == pytest.approx(ref[np.argmin(np.abs(x))])


def test_percentile_and_mse_observers():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, 200_000), [60.0, -45.0]]).astype(np.float32)  # two outliers
    h = _Histogram(float(x.min()), float(x.max()))
    h.add(x)
    lo, hi = h.percentile_range(99.9)
    width = (h.hi - h.lo) / 2048
    assert lo == pytest.approx(np.percentile(x, 0.1), abs=2 * width)
    assert hi == pytest.approx(np.percentile(x, 99.9), abs=2 * width)

    def mse(a, b):
        s, z = qparams(a, b, 8)
        q = np.array(fake_quant(mx.array(x), s, z, 8))
        return float(np.mean((q - x) ** 2))

    m_lo, m_hi = h.mse_range(8)
    assert m_hi < 60.0 and m_lo > -45.0  # the outliers are clipped
    assert mse(m_lo, m_hi) < 0.8 * mse(float(x.min()), float(x.max()))


class _TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 3)

    def __call__(self, x):
        return self.b(nn.relu(self.a(x)))


def test_simulation_matches_a_numpy_model():
    mx.random.seed(0)
    m = _TwoLinear()
    mx.eval(m.parameters())
    x = np.random.default_rng(2).normal(size=(16, 4)).astype(np.float32)
    images = LabelledImages("x", x, np.zeros(16, dtype=np.int64))
    cal = calibrate(m, images, ActSimSettings(observer="minmax", calib=16))
    assert sim_points(m, False) == [("a", "in"), ("b", "in"), ("b", "out")]
    t = {q.point: q for q in cal.tensors}
    assert t["a:in"].lo == pytest.approx(min(0.0, x.min())) and t["a:in"].hi == pytest.approx(max(0.0, x.max()))

    def fq(v, p):
        return torch.fake_quantize_per_tensor_affine(
            torch.from_numpy(v), t[p].scale, t[p].zero_point, -128, 127
        ).numpy()

    wa, ba = np.array(m.a.weight), np.array(m.a.bias)
    wb, bb = np.array(m.b.weight), np.array(m.b.bias)
    h = np.maximum(fq(x, "a:in") @ wa.T + ba, 0).astype(np.float32)
    ref = fq((fq(h, "b:in") @ wb.T + bb).astype(np.float32), "b:out")
    with simulated_activations(m, cal):
        out = np.array(m(mx.array(x)))
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert type(m.a) is nn.Linear  # hooks are gone after the block
    plain = np.maximum(x @ wa.T + ba, 0) @ wb.T + bb
    np.testing.assert_allclose(np.array(m(mx.array(x))), plain, atol=1e-5)


def test_sweep_on_a_quantized_model_labels_weight_only_and_simulated():
    b = tiny_bundle()
    b.quantization = quantize_model(b.model, make_recipe("int8"), input_shape=b.input_shape())
    images = LabelledImages("r", batch(24, seed=4), np.arange(24) % 4)
    rows = calibration_sweep(b.model, images, images, observers=("minmax", "mse"), sizes=(1, 16))
    assert [(r.observer, r.calib) for r in rows] == [("minmax", 1), ("minmax", 16), ("mse", 1), ("mse", 16)]
    weight_only = np.mean(b.predict_logits(images.x).argmax(1) == images.y)
    assert all(r.weight_only_accuracy == pytest.approx(weight_only) for r in rows)
    assert all(r.kl_vs_weight_only < 0.05 for r in rows)  # int8 activations barely move a tiny model


def test_bad_settings():
    with pytest.raises(UserError, match="observer"):
        ActSimSettings(observer="kl").validate()
    with pytest.raises(UserError, match="at least one"):
        ActSimSettings(calib=0).validate()
