"""A model rebuilt from a graph description (Keras and ONNX imports) as MLX modules.

The description lives in the bundle's ``arch_config`` (JSON), the parameters in
its safetensors, so a bundle of an imported graph saves, loads and quantizes like
any other: convolutions are ``nn.Conv2d``/``DepthwiseConv2d`` and dense layers
``nn.Linear`` under ``layers.<key>``, constants are arrays under ``consts.<key>``.

Tensors are NHWC. Config::

    {"inputs": [{"name": "x", "shape": [H, W, C]}],
     "nodes": [{"name": "n1", "op": "conv", "inputs": ["x"], "attrs": {...}}, ...],
     "outputs": ["logits"], "source": "keras" | "onnx"}

Node inputs name earlier nodes, graph inputs, or constants as ``"const:<key>"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn

from engine.image.data.preprocess import Preprocessing
from engine.image.models.layers import ACTIVATIONS, DepthwiseConv2d, mean_f32, pool2d

GRAPH_PREPROCESSING = Preprocessing(input_size=(224, 224), channels=3, resize="stretch", scale="unit")


@dataclass(frozen=True)
class GraphConfig:
    inputs: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    source: str = ""
    num_classes: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> GraphConfig:
        return cls(
            inputs=list(d.get("inputs", [])),
            nodes=list(d.get("nodes", [])),
            outputs=list(d.get("outputs", [])),
            source=str(d.get("source", "")),
            num_classes=d.get("num_classes"),
        )

    def to_dict(self) -> dict:
        return {
            "inputs": self.inputs,
            "nodes": self.nodes,
            "outputs": self.outputs,
            "source": self.source,
            "num_classes": self.num_classes,
        }


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


def make_module(op: str, a: dict) -> nn.Module | None:
    """The parameter-holding module of a node, or None for parameter-free ops."""
    if op == "conv":
        kernel, stride, dilation = _pair(a["kernel"]), _pair(a.get("stride", 1)), _pair(a.get("dilation", 1))
        groups, cin, cout, bias = int(a.get("groups", 1)), int(a["in"]), int(a["out"]), bool(a.get("bias"))
        top, bottom, left, right = a.get("pads", (0, 0, 0, 0))
        pad = (top, left) if (top, left) == (bottom, right) else (0, 0)  # asymmetric padding is applied before the conv
        if groups > 1 and groups == cin == cout and dilation == (1, 1):
            return DepthwiseConv2d(cin, kernel, stride, pad, bias=bias)
        return nn.Conv2d(cin, cout, kernel, stride, pad, dilation, groups, bias)
    if op == "bn":
        return nn.BatchNorm(int(a["channels"]), eps=float(a.get("eps", 1e-5)))
    if op == "linear":
        return nn.Linear(int(a["in"]), int(a["out"]), bias=bool(a.get("bias", True)))
    if op == "layer_norm":  # over the last axis (ONNX LayerNormalization, axis -1)
        return nn.LayerNorm(int(a["channels"]), eps=float(a.get("eps", 1e-5)), affine=True)
    return None


def _pool(x: mx.array, a: dict) -> mx.array:
    kernel = _pair(a["kernel"])
    return pool2d(
        x,
        a["kind"],
        kernel,
        _pair(a.get("stride", kernel)),
        a.get("pads", (0, 0, 0, 0)),
        a.get("count_include_pad", True),
    )


def _act(x: mx.array, a: dict) -> mx.array:
    kind = a["kind"]
    if kind in ACTIVATIONS:
        return ACTIVATIONS[kind](x)
    if kind in ("linear", "identity"):
        return x
    if kind == "clip":
        lo, hi = a.get("min"), a.get("max")
        if lo is not None:
            x = mx.maximum(x, lo)
        if hi is not None:
            x = mx.minimum(x, hi)
        return x
    if kind == "leaky_relu":
        return nn.leaky_relu(x, a.get("alpha", 0.01))
    if kind == "elu":
        return nn.elu(x, a.get("alpha", 1.0))
    if kind == "tanh":
        return mx.tanh(x)
    if kind == "gelu":
        return nn.gelu(x) if not a.get("approximate") else nn.gelu_approx(x)
    if kind == "softplus":
        return nn.softplus(x)
    if kind == "erf":  # PyTorch's exact GELU exports as x * 0.5 * (1 + erf(x / sqrt 2))
        return mx.erf(x)
    if kind == "hardsigmoid":
        return mx.clip(x * a.get("alpha", 1 / 6) + a.get("beta", 0.5), 0.0, 1.0)
    if kind == "softmax":
        return mx.softmax(x, axis=a.get("axis", -1), precise=True)
    raise ValueError(f"unknown activation '{kind}'")


def _reshape(x: mx.array, a: dict) -> mx.array:
    shape = list(a["shape"])
    if a.get("keep_batch"):
        return x.reshape(x.shape[0], *shape)
    # ONNX: 0 copies the input's dimension.
    shape = [x.shape[i] if s == 0 and a.get("zero_copies", True) else s for i, s in enumerate(shape)]
    return x.reshape(shape)


ELEMENTWISE: dict[str, Callable] = {
    "add": mx.add,
    "sub": mx.subtract,
    "mul": mx.multiply,
    "div": mx.divide,
    "max": mx.maximum,
    "min": mx.minimum,
}


def run_op(op: str, a: dict, xs: list, module) -> mx.array:
    """Evaluate one node on NHWC tensors."""
    if op == "conv":
        top, bottom, left, right = a.get("pads", (0, 0, 0, 0))
        x = xs[0]
        if (top, left) != (bottom, right):
            x = mx.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
        return module(x)
    if op in ("bn", "linear", "layer_norm"):
        return module(xs[0])
    if op == "act":
        return _act(xs[0], a)
    if op in ELEMENTWISE:
        out = xs[0]
        for y in xs[1:]:
            out = ELEMENTWISE[op](out, y)
        return out
    if op == "concat":
        return mx.concatenate(xs, axis=a.get("axis", -1))
    if op == "pool":
        return _pool(xs[0], a)
    if op == "global_pool":
        f = mx.max if a["kind"] == "max" else mean_f32
        return f(xs[0], axis=(1, 2), keepdims=bool(a.get("keepdims", False)))
    if op == "mean":
        return mean_f32(xs[0], axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", True)))
    if op == "pad":
        top, bottom, left, right = a["pads"]
        return mx.pad(xs[0], [(0, 0), (top, bottom), (left, right), (0, 0)], constant_values=a.get("value", 0.0))
    if op == "reshape":
        return _reshape(xs[0], a)
    if op == "flatten":
        axis = a.get("axis", 1)
        x = xs[0]
        lead = 1
        for s in x.shape[:axis]:
            lead *= s
        return x.reshape(lead, -1)
    if op == "transpose":
        return mx.transpose(xs[0], a["perm"])
    if op == "squeeze":
        return mx.squeeze(xs[0], axis=tuple(a["axes"]))
    if op == "unsqueeze":
        return mx.expand_dims(xs[0], tuple(a["axes"]))
    if op == "matmul":
        return xs[0] @ xs[1]
    if op == "gather":  # ONNX Gather with constant indices (a scalar index drops the axis)
        return mx.take(xs[0], mx.array(a["indices"]), axis=a["axis"])
    if op == "identity":
        return xs[0]
    raise ValueError(f"unknown graph op '{op}'")


class GraphModel(nn.Module):
    """Runs a :class:`GraphConfig` node by node."""

    def __init__(self, config: GraphConfig):
        super().__init__()
        self.spec = config
        layers, consts = {}, {}
        for node in config.nodes:
            if node["op"] == "const":
                consts[node["attrs"]["key"]] = mx.zeros(tuple(node["attrs"]["shape"]))
                continue
            module = make_module(node["op"], node.get("attrs", {}))
            if module is not None:
                layers[node["attrs"]["key"]] = module
        self.layers = layers
        self.consts = consts

    def __call__(self, x: mx.array) -> mx.array:
        if self.spec.inputs[0].get("batch_one") and x.shape[0] > 1:
            # A graph exported for one image (its reshapes fold that batch in): one image at a time.
            return mx.concatenate([self(x[i : i + 1]) for i in range(x.shape[0])], axis=0)
        values = {self.spec.inputs[0]["name"]: x}
        for node in self.spec.nodes:
            op, a = node["op"], node.get("attrs", {})
            if op == "const":
                values[node["name"]] = self.consts[a["key"]]
                continue
            xs = [values[i] for i in node["inputs"]]
            module = self.layers[a["key"]] if "key" in a and a["key"] in self.layers else None
            values[node["name"]] = run_op(op, a, xs, module)
        return values[self.spec.outputs[0]]


def sanitize(weights: dict) -> dict:
    return weights


def infer_config(weights: dict) -> dict:
    return {}
