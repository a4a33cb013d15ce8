"""BatchNorm folding: exact in float, smaller on disk, reloads, refuses what it cannot fold."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.image.bundle import load_bundle
from engine.image.quant.apply import quantizable_layers, quantize_model
from engine.image.quant.fold import FoldedBatchNorm, find_conv_bn_pairs, fold_batchnorm
from engine.image.quant.recipes import make_recipe
from tests.engine.quant_helpers import batch, tiny_bundle


def test_folding_is_exact_in_float_and_matches_a_numpy_reference():
    b = tiny_bundle()
    ref = b.predict_logits(batch(8))
    # numpy reference of one fold: BN(conv(x)) with the original parameters
    conv, bn = b.model.conv3.conv, b.model.conv3.bn
    x = np.random.default_rng(0).standard_normal((1, 7, 7, 16)).astype(np.float32)
    y = np.array(conv(mx.array(x)))
    expected = (y - np.array(bn.running_mean)) / np.sqrt(np.array(bn.running_var) + bn.eps) * np.array(
        bn.weight
    ) + np.array(bn.bias)
    pairs = fold_batchnorm(b.model, b.input_shape())
    assert pairs == [(f"{n}.conv", f"{n}.bn") for n in ("stem", "dw", "pw", "conv3", "conv4")]
    assert isinstance(b.model.conv3.bn, FoldedBatchNorm)
    np.testing.assert_allclose(np.array(b.model.conv3.conv(mx.array(x))), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b.predict_logits(batch(8)), ref, rtol=1e-4, atol=1e-4)


def test_folded_quantized_bundle_reloads_and_is_smaller(tmp_path):
    folded, plain = tiny_bundle(), tiny_bundle()
    folded.quantization = quantize_model(folded.model, make_recipe("int8"), input_shape=folded.input_shape())
    plain.quantization = quantize_model(
        plain.model, make_recipe("int8", fold_bn=False), input_shape=plain.input_shape()
    )
    assert len(folded.quantization["folded"]) == 5 and plain.quantization["folded"] == []
    folded.save(tmp_path / "f")
    plain.save(tmp_path / "p")
    assert folded.size_on_disk() < plain.size_on_disk()
    loaded = load_bundle(tmp_path / "f")
    np.testing.assert_array_equal(loaded.predict_logits(batch()), folded.predict_logits(batch()))
    np.testing.assert_allclose(folded.predict_logits(batch()), plain.predict_logits(batch()), atol=0.05, rtol=0.05)


class _SkipUsesConvOutput(nn.Module):
    """conv output feeds both the BatchNorm and a skip connection: folding would change the skip."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm(4)
        self.bn.running_var = mx.full((4,), 4.0)
        self.head = nn.Linear(4, 3)

    def __call__(self, x):
        y = self.conv(x)
        return self.head(mx.mean(self.bn(y) + y, axis=(1, 2)))


def test_a_conv_output_used_twice_is_left_unfolded():
    m = _SkipUsesConvOutput()
    m.eval()
    mx.eval(m.parameters())
    assert find_conv_bn_pairs(m, (6, 6, 2)) == [("conv", "bn")]  # looks foldable by identity ...
    before = {k: np.array(v) for k, v in m.conv.parameters().items()}
    assert fold_batchnorm(m, (6, 6, 2)) == []  # ... but the float check refuses it
    assert isinstance(m.bn, nn.BatchNorm)
    for k, v in m.conv.parameters().items():
        np.testing.assert_array_equal(np.array(v), before[k])


def test_execution_order_of_layers():
    b = tiny_bundle()
    assert [i.path for i in quantizable_layers(b.model, b.input_shape())] == [
        "stem.conv",
        "dw.conv",
        "pw.conv",
        "conv3.conv",
        "conv4.conv",
        "head",
    ]
