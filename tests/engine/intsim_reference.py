"""ONNX Runtime static quantization as the reference of the full-integer simulation, plus PyTorch fixtures.

The float PyTorch model is exported with ``torch.onnx.export`` (BatchNorm folded, as the TorchScript
exporter does in eval mode), quantized with ``onnxruntime.quantization.quantize_static`` (QDQ,
per-channel int8 weights) on the same calibration images, and run by ONNX Runtime.
"""

from __future__ import annotations

import numpy as np

SIZE = 48
CLASSES = 10


def class_images(n: int, seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """NCHW float32 images: one smooth random prototype per class plus noise, and their labels."""
    import torch

    g = torch.Generator().manual_seed(1234)
    protos = torch.nn.functional.interpolate(
        torch.randn(CLASSES, 3, 6, 6, generator=g), size=(size, size), mode="bilinear"
    )
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = 1.5 * protos.numpy()[y] + 0.15 * rng.standard_normal((n, 3, size, size)).astype(np.float32)
    return x.astype(np.float32), y


def settle(net, size: int = SIZE, affine: bool = False):
    """Give a random-init torch net realistic BatchNorm statistics and a class-mean head, without training.

    A few train-mode passes set the running statistics; the head is a ridge regression of the labels on
    the features of the evaluation images, so their top-1 is decisive (as a trained model's on its data)
    and a flip between two int8 versions means a real difference, not a near-tie.
    """
    import torch

    g = torch.Generator().manual_seed(7)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            if affine:  # distinct gammas/betas, as trained (identical ones are deduplicated by the exporter)
                with torch.no_grad():
                    m.weight.uniform_(0.5, 1.5, generator=g)
                    m.bias.normal_(0.0, 0.1, generator=g)
    net.train()
    with torch.no_grad():
        for seed in range(3):
            net(torch.from_numpy(class_images(16, 100 + seed, size)[0]))
    net.eval()
    head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    feats = {}

    def grab(module, inp, out):
        feats["x"] = inp[0]

    h = head.register_forward_hook(grab)
    x, y = class_images(128, 2, size)  # the evaluation images of the parity tests
    with torch.no_grad():
        net(torch.from_numpy(x))
    h.remove()
    f = feats["x"].double()
    mu, sd = f.mean(0, keepdim=True), f.std(0, keepdim=True) + 1e-6
    z = (f - mu) / sd
    target = 8.0 * (torch.nn.functional.one_hot(torch.from_numpy(y), CLASSES).double() - 1.0 / CLASSES)
    w = torch.linalg.solve(z.T @ z + 0.1 * torch.eye(z.shape[1], dtype=z.dtype), z.T @ target).T
    with torch.no_grad():
        head.weight.copy_((w / sd).float())
        head.bias.copy_((-(w / sd) @ mu[0]).float())
    return net


def export_onnx(net, path, size: int = SIZE) -> None:
    import torch

    torch.onnx.export(
        net,
        torch.zeros(1, 3, size, size),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )


def ort_quantize(src, dst, calib_nchw: np.ndarray, observer: str, act_type: str = "uint8", batch: int = 4) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": calib_nchw[i : i + batch]} for i in range(0, len(calib_nchw), batch)])

        def get_next(self):
            return next(self.it, None)

    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[observer]
    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8 if act_type == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
    )


def ort_logits(path, x_nchw: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x_nchw})[0]


def mobilenet_v2(width: float = 0.5):
    import torch

    from tests.torchvision_ref import torchvision

    torch.manual_seed(0)
    return settle(torchvision.models.mobilenet_v2(num_classes=CLASSES, width_mult=width))


def dense_block_net():
    """A DenseNet-style CNN: stem, a dense block whose layers read the concatenation of all before, a transition."""
    import torch
    from torch import nn

    def cbr(i, o, k=3, s=1):
        return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    class DenseBlockNet(nn.Module):
        def __init__(self, c0=16, growth=8, layers=3):
            super().__init__()
            self.stem = cbr(3, c0, 3, 2)
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.layers = nn.ModuleList(
                nn.Sequential(cbr(c0 + i * growth, 2 * growth, 1), cbr(2 * growth, growth, 3)) for i in range(layers)
            )
            c = c0 + layers * growth
            self.transition = nn.Sequential(cbr(c, c // 2, 1), nn.AvgPool2d(2, 2))
            self.head = nn.Linear(c // 2, CLASSES)

        def forward(self, x):
            x = self.pool(self.stem(x))
            feats = [x]
            for layer in self.layers:
                feats.append(layer(torch.cat(feats, 1)))
            x = self.transition(torch.cat(feats, 1))
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    return settle(DenseBlockNet())


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(1) == b.argmax(1)))
