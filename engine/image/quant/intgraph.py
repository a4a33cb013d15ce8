"""A model as the flat graph of ops a deployment runtime sees, for full-integer simulation.

A runtime such as ONNX Runtime quantizes *tensors*: every value between two ops, including
those made by additions, concatenations and pooling that live inside a module's ``__call__``
in the app's architectures. :func:`lower` turns a model into a list of :class:`Op` (NHWC,
float32 weights as numpy) that makes those tensors explicit:

- graph models (ONNX and Keras imports) node for node;
- MobileNetV2 and DenseNet (torchvision layouts) by walking their modules.

:func:`fold_batchnorm` then folds each BatchNorm into the convolution before it, as ORT's
optimizer and the PyTorch ONNX exporter do. :func:`run` evaluates the graph in MLX, with an
optional hook on every op's output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import UserError
from engine.image.models.graph import GraphModel, run_op
from engine.image.models.layers import DepthwiseConv2d, shifted_taps

WEIGHT_OPS = ("conv", "linear")


@dataclass(frozen=True)
class Op:
    """One node: ``params`` holds float32 numpy arrays (weight, bias; BatchNorm's mean/var/gamma/beta)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class IntGraph:
    input: str
    ops: tuple[Op, ...]
    output: str

    def consumers(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            for i in op.inputs:
                out.setdefault(i, []).append(op)
        return out


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


def _np(a) -> np.ndarray:
    return np.array(a.astype(mx.float32), dtype=np.float32)


class _Builder:
    def __init__(self):
        self.ops: list[Op] = []

    def add(self, name: str, op: str, inputs, attrs=None, params=None) -> str:
        self.ops.append(Op(name, op, tuple(inputs), dict(attrs or {}), dict(params or {})))
        return name

    def conv(self, name: str, module: nn.Module, x: str) -> str:
        if isinstance(module, DepthwiseConv2d):
            groups, stride, padding = module.channels, module.stride, module.padding
        elif isinstance(module, nn.Conv2d):
            groups, stride, padding = getattr(module, "groups", 1), module.stride, module.padding
            if _pair(getattr(module, "dilation", 1)) != (1, 1):
                raise UserError(f"full-integer simulation: dilated convolution '{name}' is not supported")
        else:
            raise UserError(f"full-integer simulation: '{name}' is not a float convolution ({type(module).__name__})")
        ph, pw = _pair(padding)
        params = {"weight": _np(module.weight)}
        if "bias" in module:
            params["bias"] = _np(module.bias)
        attrs = {"stride": _pair(stride), "pads": (ph, ph, pw, pw), "groups": int(groups)}
        return self.add(name, "conv", [x], attrs, params)

    def bn(self, name: str, module: nn.BatchNorm, x: str) -> str:
        c = module.running_mean.shape[0]
        params = {
            "mean": _np(module.running_mean),
            "var": _np(module.running_var),
            "gamma": _np(module.weight) if "weight" in module else np.ones(c, np.float32),
            "beta": _np(module.bias) if "bias" in module else np.zeros(c, np.float32),
        }
        return self.add(name, "bn", [x], {"eps": float(module.eps)}, params)

    def linear(self, name: str, module: nn.Module, x: str) -> str:
        if not isinstance(module, nn.Linear):
            raise UserError(f"full-integer simulation: '{name}' is not a float Linear ({type(module).__name__})")
        params = {"weight": _np(module.weight)}
        if "bias" in module:
            params["bias"] = _np(module.bias)
        return self.add(name, "linear", [x], {}, params)

    def act(self, name: str, kind: str, x: str) -> str:
        return self.add(name, "act", [x], {"kind": kind})


def _lower_graph_model(model: GraphModel) -> IntGraph:
    b = _Builder()
    spec = model.spec
    for node in spec.nodes:
        op, a, name = node["op"], dict(node.get("attrs", {})), node["name"]
        if op == "const":
            b.add(name, "const", [], a, {"value": _np(model.consts[a["key"]])})
            continue
        module = model.layers[a["key"]] if "key" in a and a["key"] in model.layers else None
        if op == "conv":
            top, bottom, left, right = a.get("pads", (0, 0, 0, 0))
            x = node["inputs"][0]
            if (top, left) != (bottom, right):
                x = b.add(f"{name}/pad", "pad", [x], {"pads": (top, bottom, left, right)})
                top = bottom = left = right = 0
            b.conv(name, module, x)
            b.ops[-1] = replace(b.ops[-1], attrs={**b.ops[-1].attrs, "pads": (top, bottom, left, right)})
        elif op == "bn":
            b.bn(name, module, node["inputs"][0])
        elif op == "linear":
            b.linear(name, module, node["inputs"][0])
        else:
            b.add(name, op, node["inputs"], a)
    return IntGraph(spec.inputs[0]["name"], tuple(b.ops), spec.outputs[0])


def _conv_bn(b: _Builder, prefix: str, pair: list, x: str, act: str | None) -> str:
    y = b.bn(f"{prefix}.1", pair[1], b.conv(f"{prefix}.0", pair[0], x))
    return b.act(f"{prefix}.act", act, y) if act else y


def _lower_mobilenet_v2(model) -> IntGraph:
    b = _Builder()
    x = "input"
    for i, layer in enumerate(model.features):
        pre = f"features.{i}"
        if isinstance(layer, list):
            x = _conv_bn(b, pre, layer, x, "relu6")
            continue
        y = x
        for j, sub in enumerate(layer.conv[:-2]):
            y = _conv_bn(b, f"{pre}.conv.{j}", sub, y, "relu6")
        k = len(layer.conv) - 2
        y = b.bn(f"{pre}.conv.{k + 1}", layer.conv[-1], b.conv(f"{pre}.conv.{k}", layer.conv[-2], y))
        x = b.add(f"{pre}.add", "add", [x, y]) if layer.use_res else y
    x = b.add("pool", "global_pool", [x], {"kind": "avg"})
    out = b.linear("classifier.1", model.classifier[1], x)
    return IntGraph("input", tuple(b.ops), out)


def _lower_densenet(model) -> IntGraph:
    b = _Builder()
    f = model.features
    x = b.act("features.relu0", "relu", b.bn("features.norm0", f.norm0, b.conv("features.conv0", f.conv0, "input")))
    x = b.add("features.pool0", "pool", [x], {"kind": "max", "kernel": 3, "stride": 2, "pads": (1, 1, 1, 1)})
    for i in range(1, f.num_blocks + 1):
        block, pre = f[f"denseblock{i}"], f"features.denseblock{i}"
        feats = [x]
        for j in range(1, block.n + 1):
            layer, lp = block[f"denselayer{j}"], f"{pre}.denselayer{j}"
            inp = b.add(f"{lp}.cat", "concat", feats, {"axis": -1})  # a tensor of its own even for one input
            y = b.act(f"{lp}.relu1", "relu", b.bn(f"{lp}.norm1", layer.norm1, inp))
            y = b.act(f"{lp}.relu2", "relu", b.bn(f"{lp}.norm2", layer.norm2, b.conv(f"{lp}.conv1", layer.conv1, y)))
            feats.append(b.conv(f"{lp}.conv2", layer.conv2, y))
        x = b.add(f"{pre}.cat", "concat", feats, {"axis": -1})
        if i < f.num_blocks:
            t, tp = f[f"transition{i}"], f"features.transition{i}"
            y = b.conv(f"{tp}.conv", t.conv, b.act(f"{tp}.relu", "relu", b.bn(f"{tp}.norm", t.norm, x)))
            x = b.add(f"{tp}.pool", "pool", [y], {"kind": "avg", "kernel": 2, "stride": 2})
    x = b.act("features.relu5", "relu", b.bn("features.norm5", f.norm5, x))
    x = b.add("pool", "global_pool", [x], {"kind": "avg"})
    out = b.linear("classifier", model.classifier, x)
    return IntGraph("input", tuple(b.ops), out)


def lower(model: nn.Module) -> IntGraph:
    """The op graph of a float model.

    Raises:
        UserError: an architecture this simulation cannot lower, or a quantized model.
    """
    from engine.image.models.densenet import DenseNet
    from engine.image.models.mobilenet_v2 import MobileNetV2

    if isinstance(model, GraphModel):
        return _lower_graph_model(model)
    if isinstance(model, MobileNetV2):
        return _lower_mobilenet_v2(model)
    if isinstance(model, DenseNet):
        return _lower_densenet(model)
    raise UserError(
        f"full-integer simulation supports imported graphs (ONNX, Keras), MobileNetV2 and DenseNet, "
        f"not {type(model).__name__}"
    )


def fold_batchnorm(graph: IntGraph) -> IntGraph:
    """Fold every BatchNorm whose input is a conv/linear output read by nothing else into that op."""
    consumers = graph.consumers()
    by_name = {op.name: op for op in graph.ops}
    folded: dict[str, Op] = {}
    renamed: dict[str, str] = {}
    for op in graph.ops:
        if op.op != "bn":
            continue
        src = by_name.get(op.inputs[0])
        if src is None or src.op not in WEIGHT_OPS or len(consumers.get(src.name, [])) != 1 or src.name == graph.output:
            continue
        p = op.params
        s = (p["gamma"] / np.sqrt(p["var"] + np.float32(op.attrs.get("eps", 1e-5)))).astype(np.float32)
        w = src.params["weight"]
        bias = src.params.get("bias", np.zeros(w.shape[0], np.float32))
        params = {
            "weight": (w * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32),
            "bias": ((bias - p["mean"]) * s + p["beta"]).astype(np.float32),
        }
        folded[src.name] = replace(src, name=op.name, params=params)
        renamed[op.name] = src.name
    ops = []
    for op in graph.ops:
        if op.name in folded:
            ops.append(folded[op.name])
        elif op.name not in renamed:
            ops.append(op)
    return IntGraph(graph.input, tuple(ops), graph.output)


def _conv(x: mx.array, op: Op, w: mx.array, bias: mx.array | None) -> mx.array:
    top, bottom, left, right = op.attrs.get("pads", (0, 0, 0, 0))
    groups = int(op.attrs.get("groups", 1))
    stride = tuple(op.attrs.get("stride", (1, 1)))
    if groups > 1 and groups == w.shape[0] == x.shape[-1] and w.shape[-1] == 1:
        y = shifted_taps(mx.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)]), w, stride, 0)
    else:
        if (top, left) != (bottom, right):
            x = mx.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
            top = left = 0
        y = mx.conv2d(x, w, stride=stride, padding=(top, left), groups=groups)
    return y if bias is None else y + bias


def compute(op: Op, xs: list, params: dict) -> mx.array:
    """One op on NHWC tensors; ``params`` are the (possibly fake-quantized) mx arrays of ``op``."""
    if op.op == "conv":
        return _conv(xs[0], op, params["weight"], params.get("bias"))
    if op.op == "linear":
        y = xs[0] @ params["weight"].T
        return y if "bias" not in params else y + params["bias"]
    if op.op == "bn":
        inv = mx.rsqrt(params["var"] + op.attrs.get("eps", 1e-5)) * params["gamma"]
        return (xs[0] - params["mean"]) * inv + params["beta"]
    if op.op == "const":
        return params["value"]
    return run_op(op.op, op.attrs, xs, None)


OutputHook = Callable[[Op, mx.array], mx.array]


def run(
    graph: IntGraph,
    x: mx.array,
    params: dict[str, dict],
    on_input: Callable[[mx.array], mx.array] | None = None,
    on_output: OutputHook | None = None,
) -> mx.array:
    """Evaluate ``graph`` on ``x``; ``on_output(op, y)`` may replace each op's output (observe or fake-quantize)."""
    values = {graph.input: on_input(x) if on_input is not None else x}
    for op in graph.ops:
        y = compute(op, [values[i] for i in op.inputs], params.get(op.name, {}))
        values[op.name] = on_output(op, y) if on_output is not None else y
    return values[graph.output]


def mx_params(graph: IntGraph) -> dict[str, dict]:
    return {op.name: {k: mx.array(v) for k, v in op.params.items()} for op in graph.ops if op.params}
