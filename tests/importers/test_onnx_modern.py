"""ONNX files exported by PyTorch from ConvNeXt and MobileNetV3 import with onnxruntime's outputs.

``torch.onnx.export`` writes the exact GELU as Erf arithmetic and LayerNorm2d as
Transpose -> LayerNormalization -> Transpose; MobileNetV3 brings HardSwish and
HardSigmoid. The reference is onnxruntime running the same file.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from engine.image.importers.onnx_graph import import_onnx
from tests.importers.modern_reference import check_parity, randomize, reference_input
from tests.torchvision_ref import torchvision

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    settings = [CNBlockConfig(24, 48, 1), CNBlockConfig(48, 96, 2), CNBlockConfig(96, None, 1)]
    return ConvNeXt(settings, num_classes=5)


@pytest.mark.parametrize(
    "name, build, shape",
    [
        ("convnext", _convnext, (2, 3, 64, 48)),
        ("mobilenet_v3_small", lambda: torchvision.models.mobilenet_v3_small(num_classes=5), (2, 3, 64, 48)),
    ],
)
def test_pytorch_export_matches_onnxruntime(tmp_path, name, build, shape):
    model = randomize(build())
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(shape), str(path), dynamo=False, opset_version=17)
    x = reference_input(shape)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input.1": x})[0]
    bundle = import_onnx(path)
    assert len(bundle.labels) == 5
    got = bundle.predict_logits(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    check_parity(got, want)


def test_pytorch_exported_vit_matches_onnxruntime(tmp_path):
    """A ViT export is mostly shape arithmetic (Shape, Gather, Expand, Where...), folded at import.

    The file is exported for one image; the bundle runs a batch of two one image at a time.
    """
    from torchvision.models import VisionTransformer

    model = randomize(VisionTransformer(32, 8, 2, 2, 32, 64, num_classes=5))
    path = tmp_path / "vit.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, 32, 32), str(path), dynamo=False, opset_version=17)
    x = reference_input((2, 3, 32, 32))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    want = np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(2)])
    bundle = import_onnx(path)
    assert bundle.arch_config["inputs"][0]["batch_one"] is True
    got = bundle.predict_logits(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    check_parity(got, want)
