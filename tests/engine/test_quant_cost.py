"""Quantizing costs no float forward beyond a lazy trace and a small fold check."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.image.quant import fold
from engine.image.quant.apply import quantize_model
from engine.image.quant.recipes import make_recipe
from tests.engine.quant_helpers import batch, tiny_bundle


class _FixedSize(nn.Module):
    """conv -> bn -> flatten -> linear: runs only at its own 40x40 input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, stride=4, padding=1, bias=False)
        self.bn = nn.BatchNorm(4)
        self.bn.running_mean = mx.full((4,), 0.5)
        self.bn.running_var = mx.full((4,), 3.0)
        self.head = nn.Linear(10 * 10 * 4, 3)

    def __call__(self, x):
        y = self.bn(self.conv(x))
        return self.head(y.reshape(y.shape[0], -1))


def test_fold_check_falls_back_to_the_model_size():
    m = _FixedSize()
    m.eval()
    mx.eval(m.parameters())
    x = mx.random.normal((2, 40, 40, 2), key=mx.random.key(5))
    ref = np.array(m(x))
    assert fold.fold_batchnorm(m, (40, 40, 2)) == [("conv", "bn")]
    np.testing.assert_allclose(np.array(m(x)), ref, rtol=1e-4, atol=1e-4)


def test_quantize_evaluates_only_small_checks(monkeypatch):
    """The traces build MLX's graph without computing it; the fold check runs one image at <= 32 px."""
    b = tiny_bundle()
    x = batch()
    ref = np.array(b.forward(mx.array(x)))
    inputs: list[tuple[int, ...]] = []
    real_call = type(b.model).__call__

    def spy(self, inp):
        inputs.append(tuple(inp.shape))
        return real_call(self, inp)

    monkeypatch.setattr(type(b.model), "__call__", spy)
    qconfig = quantize_model(b.model, make_recipe("int8"), input_shape=b.input_shape())
    monkeypatch.undo()
    assert qconfig["folded"]
    # every forward ran on one image; the traces (lazy) and the fold check before and after
    assert all(shape[0] == 1 for shape in inputs), inputs
    out = np.array(b.forward(mx.array(x)))
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
