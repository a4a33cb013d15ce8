"""Grad-CAM on a tiny model: hand-computed CAM, finite-difference gradients (float and quantized)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from engine.core.errors import UserError
from engine.image.bundle import load_bundle
from engine.image.gradcam import (
    _slots,
    _Wrapped,
    cam_from_gradients,
    candidate_layers,
    compare_gradcam,
    default_layer,
    gradcam,
    layer_gradients,
    similarity,
)
from engine.jobs.image import QuantizeJob
from engine.runtime import JobContext, Workspace
from tests.evaluation_helpers import tiny_bundle


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradcam")
    tiny_bundle(root / "float", classes=3, size=16, channels=3, seed=1)
    ws = Workspace()
    QuantizeJob(str(root / "float"), "int8", str(root / "int8"), group_size=32, store=False).run(JobContext(), ws)
    return load_bundle(root / "float"), load_bundle(root / "int8")


def _inputs(n=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 16, 16, 3)).astype(np.float32)


def _score(bundle, x, layer, classes, delta: np.ndarray | None) -> float:
    """sum_n logit[n, class_n] with ``delta`` added to the layer's output (float64 sum)."""
    path_slot = [s for s in _slots(bundle.model) if s[0] == layer]
    with _Wrapped(path_slot, None) as taps:
        if delta is not None:
            object.__setattr__(taps[layer], "delta", mx.array(delta.astype(np.float32)))
        logits = np.array(bundle.forward(mx.array(x)), dtype=np.float64)
    return float(logits[np.arange(len(classes)), classes].sum())


def test_last_layer_cam_equals_the_hand_computed_class_activation_map(models):
    bundle, _ = models
    x, classes = _inputs(), np.array([0, 2])
    g = layer_gradients(bundle, x, "conv4", classes)
    a = np.array(bundle.model.features(mx.array(x)))  # (N, h, w, C), independent of the tap
    w = np.array(bundle.model.head.weight)  # (classes, C)
    hw = a.shape[1] * a.shape[2]
    # GAP + Linear head: dScore/dA[h, w, k] = W[c, k] / (h * w) everywhere.
    assert np.allclose(g.gradient, w[classes][:, None, None, :] / hw, atol=1e-6)
    assert np.allclose(g.activation, a, atol=1e-5)
    hand = np.maximum(np.einsum("nhwc,nc->nhw", a, w[classes] / hw), 0)
    assert np.allclose(cam_from_gradients(g.activation, g.gradient), hand, atol=1e-6)


@pytest.mark.parametrize("which", [0, 1], ids=["float", "int8"])
@pytest.mark.parametrize("layer", ["pw", "dw"])
def test_gradients_match_finite_differences(models, which, layer):
    bundle = models[which]
    x, classes = _inputs(seed=3), np.array([1, 0])
    g = layer_gradients(bundle, x, layer, classes)
    rng = np.random.default_rng(7)
    # The network is piecewise linear in the layer output, so a central difference is exact
    # unless a ReLU kink lies within eps; eps = 1e-4 keeps clear of them and of float32 noise.
    for _ in range(3):
        v = rng.normal(size=g.activation.shape)
        eps = 1e-4
        fd = (_score(bundle, x, layer, classes, eps * v) - _score(bundle, x, layer, classes, -eps * v)) / (2 * eps)
        assert float((g.gradient * v).sum()) == pytest.approx(fd, rel=5e-3, abs=1e-4)


def test_quantized_layers_are_really_in_the_gradient_path(models):
    _, q = models
    kinds = {type(m).__name__ for _, m in q.model.named_modules()}
    assert "QuantizedConv2d" in kinds and "QuantizedDepthwiseConv2d" in kinds


def test_model_is_restored_and_layers_listed(models):
    bundle, _ = models
    before = sorted(k for k, _ in bundle.model.named_modules())
    x = _inputs(1)
    ref = bundle.predict_logits(x)
    gradcam(bundle, (np.random.default_rng(0).random((20, 20, 3)) * 255).astype(np.uint8))
    assert sorted(k for k, _ in bundle.model.named_modules()) == before
    assert np.array_equal(bundle.predict_logits(x), ref)
    layers = dict(candidate_layers(bundle))
    assert default_layer(bundle) == "conv4" and layers["conv4"] == (1, 2, 2, 16)
    assert layers["stem"] == (1, 16, 16, 4)
    with pytest.raises(UserError, match=r"not a \(N, H, W, C\) feature map"):
        layer_gradients(bundle, x, "head", np.array([0]))


def test_compare_explains_the_reference_class_for_every_model(models, tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)).save(path)
    out = compare_gradcam(list(models), path, layer="pw")
    assert [m.layer for m in out.maps] == ["pw", "pw"]
    assert out.maps[1].class_index == out.maps[0].class_index == out.maps[0].top1_index
    for m in out.maps:
        assert m.heatmap.shape == (16, 16) and 0 <= m.heatmap.min() and m.heatmap.max() <= 1
    assert out.correlation[0] == pytest.approx(1.0) and out.top_iou[0] == 1.0
    assert -1 <= out.correlation[1] <= 1
    assert "conv4" in out.layers


def test_similarity_of_maps():
    a = np.arange(100, dtype=float).reshape(10, 10)
    corr, iou = similarity(a, a * 2 + 1)
    assert corr == pytest.approx(1.0) and iou == 1.0
    corr, iou = similarity(a, -a)
    assert corr == pytest.approx(-1.0) and iou == 0.0
