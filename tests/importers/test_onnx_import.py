"""ONNX graphs import into MLX with outputs equal to onnxruntime's, and quantize, save and load like any bundle."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from engine.core.errors import UserError  # noqa: E402
from engine.image.bundle import load_bundle  # noqa: E402
from engine.image.importers.onnx_graph import import_onnx  # noqa: E402

TOL = 1e-3
# torch 2.13's TorchScript exporter (the offline one) warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def ort_run(path, x_nchw: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x_nchw})[0]


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _torch_cnn():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(c, 4, 1), nn.Conv2d(4, c, 1)

        def forward(self, x):
            s = x.mean((2, 3), keepdim=True)
            return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))

    class Net(nn.Module):
        """Conv/BN/ReLU6, depthwise, Hardswish, SE, residual Add, Concat, pools, Flatten, Linear, Softmax."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
            self.dw = nn.Sequential(
                nn.Conv2d(16, 16, 5, 1, 2, groups=16, bias=False), nn.BatchNorm2d(16), nn.Hardswish()
            )
            self.se = SE(16)
            self.branch = nn.Conv2d(16, 8, 1)
            self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
            self.avg = nn.AvgPool2d(2, 2)
            self.grouped = nn.Conv2d(24, 24, 3, 1, 1, groups=4)
            self.head = nn.Linear(24, 5)

        def forward(self, x):
            x = self.stem(x)
            x = x + self.se(self.dw(x))
            x = torch.cat([x, self.branch(x)], 1)
            x = self.avg(self.pool(x))
            x = torch.clamp(self.grouped(x), -2.0, 3.0)
            x = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
            return torch.softmax(self.head(x), 1)

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return torch, net


@pytest.mark.parametrize("fold", [False, True])
def test_torch_exported_cnn_matches_onnxruntime(tmp_path, fold):
    torch, net = _torch_cnn()
    path = tmp_path / "net.onnx"
    torch.onnx.export(
        net, torch.zeros(1, 3, 40, 36), str(path), dynamo=False, do_constant_folding=fold, opset_version=17,
        input_names=["image"], output_names=["probs"],
    )  # fmt: skip
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 36)).astype(np.float32)
    want = ort_run(path, x[:1])
    want = np.concatenate([want, ort_run(path, x[1:])])
    bundle = import_onnx(path, labels=list("abcde"))
    assert bundle.source["softmax_removed"]
    got = softmax(bundle.predict_logits(x.transpose(0, 2, 3, 1)))
    assert np.abs(got - want).max() <= TOL
    assert bundle.preprocessing.input_size == (40, 36)


def _graph(nodes, inits, in_shape, out_shape, opset=18):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m


def test_helper_graph_ops_match_onnxruntime(tmp_path):
    rng = np.random.default_rng(3)
    r = lambda *s: rng.normal(0, 0.5, s).astype(np.float32)  # noqa: E731
    inits = {
        "w1": r(6, 3, 3, 3), "b1": r(6), "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),
        "scale": r(6), "bias": r(6), "mean": r(6), "var": np.abs(r(6)) + 0.5,
        "chan": r(1, 6, 1, 1), "w2": r(6, 6, 1, 1), "shape": np.array([2, -1], np.int64),
        "gw": r(4, 6 * 3 * 3), "gb": r(4), "mw": r(4, 3), "axes": np.array([2, 3], np.int64),
    }  # fmt: skip
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "w1", "b1"], ["c1"], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("BatchNormalization", ["c1", "scale", "bias", "mean", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("LeakyRelu", ["bn"], ["lr"], alpha=0.1),
        helper.make_node("Mul", ["lr", "chan"], ["m"]),
        helper.make_node("Conv", ["m", "w2"], ["c2"]),
        helper.make_node("Sub", ["c2", "m"], ["s"]),
        helper.make_node("AveragePool", ["s"], ["ap"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["ap", "axes"], ["rm"], keepdims=1),
        helper.make_node("Add", ["ap", "rm"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["mp"], ["t"], perm=[0, 1, 3, 2]),
        helper.make_node("Reshape", ["t", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "gw", "gb"], ["g"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Tanh", ["g"], ["th"]),
        helper.make_node("MatMul", ["th", "mw"], ["y"]),
    ]
    # x: 2x3x12x11 -> pad -> 2x3x15x14 -> conv s2 SAME -> 2x6x8x7 -> maxpool -> 2x6x4x3 -> T -> reshape (2, 72)
    inits["gw"] = r(4, 72)
    path = tmp_path / "ops.onnx"
    onnx.save(_graph(nodes, inits, [2, 3, 12, 11], [2, 3]), str(path))
    x = rng.standard_normal((2, 3, 12, 11)).astype(np.float32)
    want = ort_run(path, x)
    bundle = import_onnx(path)
    got = bundle.predict_logits(x.transpose(0, 2, 3, 1))
    assert got.shape == want.shape == (2, 3)
    assert np.abs(got - want).max() <= TOL


def test_imported_graph_quantizes_saves_and_loads(tmp_path):
    from engine.image.quant.apply import quantize_model
    from engine.image.quant.layers import QuantizedConv2d, QuantizedDepthwiseConv2d
    from engine.image.quant.recipes import make_recipe

    torch, net = _torch_cnn()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 32, 32), str(path), dynamo=False, opset_version=17)
    bundle = import_onnx(path)
    x = np.random.default_rng(1).standard_normal((1, 32, 32, 3)).astype(np.float32)
    before = bundle.predict_logits(x)
    bundle.save(tmp_path / "B")
    again = load_bundle(tmp_path / "B")
    assert again.arch == "graph" and np.abs(again.predict_logits(x) - before).max() == 0
    qcfg = quantize_model(again.model, make_recipe("int8"))
    kinds = {type(m) for _, m in again.model.named_modules()}
    assert QuantizedConv2d in kinds and QuantizedDepthwiseConv2d in kinds
    assert {"conv", "depthwise", "linear"} <= {v["type"] for v in qcfg["layers"].values()}
    again.quantization = qcfg
    again.save(tmp_path / "Q")
    q = load_bundle(tmp_path / "Q")
    assert np.abs(q.predict_logits(x) - before).max() < 0.1


def test_unsupported_operators_are_named(tmp_path):
    nodes = [
        helper.make_node("Einsum", ["x"], ["e"], name="my_einsum", equation="nchw->nchw"),  # Erf is supported now
        helper.make_node("Flatten", ["e"], ["y"]),
    ]
    path = tmp_path / "bad.onnx"
    onnx.save(_graph(nodes, {}, [1, 3, 4, 4], [1, 48]), str(path))
    with pytest.raises(UserError, match="unsupported ONNX operators: Einsum \\(node 'my_einsum'\\)"):
        import_onnx(path)


def test_garbage_file_is_a_user_error(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\x01 this is not protobuf" * 10)
    with pytest.raises(UserError, match="junk.onnx"):
        import_onnx(path)
