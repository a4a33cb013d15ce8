"""Import Keras models (.keras zip or legacy .h5) without TensorFlow: the graph is rebuilt from the file's config.

``.keras`` is a zip of ``config.json`` and ``model.weights.h5``; legacy ``.h5``
holds the config as an attribute and weights under ``model_weights``. Both are
read with zipfile + h5py. Functional and Sequential models (nested ones too)
made of standard layers become an MLX graph model (Keras is NHWC already), so
the result saves, loads and quantizes like any bundle.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.core.memory_guard import IMPORT_FACTOR
from engine.core.native_gate import check_hdf5, read_zip_member
from engine.image.bundle import ModelBundle
from engine.image.data.preprocess import Preprocessing
from engine.image.importers.graph_builder import GraphBuilder, open_source, require
from engine.image.models.layers import tf_same_pads

IDENTITY_LAYERS = {
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Activation:linear",
}
ACTIVATIONS = {
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "swish": "silu",
    "silu": "silu",
    "tanh": "tanh",
    "softmax": "softmax",
    "hard_swish": "hardswish",
    "hard_silu": "hardswish",
    "gelu": "gelu",
    "elu": "elu",
    "softplus": "softplus",
    "leaky_relu": "leaky_relu",
    "hard_sigmoid": "hardsigmoid",
    "linear": None,
}
SUPPORTED = sorted(
    {
        "InputLayer",
        "Conv2D",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "BatchNormalization",
        "Activation",
        "ReLU",
        "LeakyReLU",
        "Softmax",
        "Add",
        "Subtract",
        "Multiply",
        "Average",
        "Maximum",
        "Minimum",
        "Concatenate",
        "MaxPooling2D",
        "AveragePooling2D",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "Dense",
        "Rescaling",
        "Normalization",
        "ZeroPadding2D",
        "Flatten",
        "Reshape",
        "Functional",
        "Sequential",
        "Model",
        *[n for n in IDENTITY_LAYERS if ":" not in n],
    }
)


def _snake(name: str) -> str:
    """Keras' naming.to_snake_case, which names each layer's weights in a .keras file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


# -- weights --------------------------------------------------------------------------


class _Keras3Weights:
    """model.weights.h5 of a .keras file: ``layers/<snake class name>[_n]/vars/<i>`` per container."""

    def __init__(self, h5):
        self.h5 = h5

    def get(self, path: list[str], names: list[str]) -> list[np.ndarray]:
        group = self.h5
        for part in path:
            group = group.get(part) if group is not None else None
        if group is None or "vars" not in group:
            return []
        v = group["vars"]
        return [np.asarray(v[str(i)]) for i in range(len(v))]


class _LegacyWeights:
    """Legacy .h5: ``model_weights/<top layer>/<weight name>`` listed in each group's ``weight_names``."""

    def __init__(self, group):
        self.by_name: dict[str, np.ndarray] = {}
        self.order: list[str] = []
        for top in group:
            g = group[top]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
            for n in names:
                if n in g:
                    key = n.removesuffix(":0")
                    self.by_name[key] = np.asarray(g[n])
                    self.order.append(key)

    def get(self, path: list[str], names: list[str]) -> list[np.ndarray]:
        # Names are '<model>/<layer>/<var>' for nested layers and '<layer>/<var>' at the top.
        for prefix in ("/".join(names) + "/", names[-1] + "/"):
            found = [self.by_name[k] for k in self.order if k.startswith(prefix) and "/" not in k[len(prefix) :]]
            if found:
                return found
        return []


# -- conversion -----------------------------------------------------------------------


def _refs(layers: list) -> list:
    """input_layers/output_layers: a single [name, node, tensor] or a list of them."""
    return [layers] if layers and isinstance(layers[0], str) else layers


class _Converter:
    def __init__(self, weights, path: Path, should_stop):
        self.w = weights
        self.path = path
        self.should_stop = should_stop
        self.b = GraphBuilder("keras")
        self.shapes: dict[str, tuple] = {}  # node name -> shape without batch
        self.softmax_removed = False
        self.count = 0

    def fail(self, layer: dict, why: str):
        name = layer.get("name") or layer.get("config", {}).get("name")
        raise UserError(f"Keras layer '{name}' ({layer.get('class_name')}): {why}", self.path)

    # Inbound tensors: Keras 3 {"args": [...]} or Keras 2 [[name, node, tensor, kwargs], ...].
    @staticmethod
    def _inbound(layer: dict) -> list[tuple[str, int, int]]:
        nodes = layer.get("inbound_nodes") or []
        if not nodes:
            return []
        node = nodes[0]
        refs = []

        def walk(obj):
            if isinstance(obj, dict):
                if obj.get("class_name") == "__keras_tensor__":
                    h = obj["config"]["keras_history"]
                    refs.append((h[0], int(h[1]), int(h[2])))
                else:
                    for v in obj.values():
                        walk(v)
            elif isinstance(obj, list):
                if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
                    refs.append((obj[0], int(obj[1]), int(obj[2])))
                else:
                    for v in obj:
                        walk(v)

        walk(node["args"] if isinstance(node, dict) else node)
        return refs

    def model(self, cfg: dict, inputs: list[str], path: list[str], names: list[str]) -> list[str]:
        """Convert a Functional or Sequential config applied to ``inputs``; returns its output nodes."""
        kind = cfg.get("class_name")
        conf = cfg.get("config", cfg)
        used: dict[str, int] = {}

        def weight_path(layer: dict) -> list[str]:
            snake = _snake(layer["class_name"])
            n = used.get(snake)
            used[snake] = 0 if n is None else n + 1
            return [*path, "layers", snake if n is None else f"{snake}_{n + 1}"]

        if kind == "Sequential":
            x = inputs[0]
            for layer in conf["layers"]:
                wp = weight_path(layer)
                if layer["class_name"] == "InputLayer":
                    continue
                x = self.layer(layer, [x], wp, names)[0]
            return [x]
        tensors: dict[tuple[str, int], str] = {}
        for (name, _, _), x in zip(_refs(conf["input_layers"]), inputs, strict=True):
            tensors[(name, 0)] = x
        for layer in conf["layers"]:
            wp = weight_path(layer)
            if layer["class_name"] == "InputLayer":
                continue
            if len(layer.get("inbound_nodes") or []) > 1:
                self.fail(layer, "a layer applied more than once (shared layer) is not supported")
            refs = self._inbound(layer)
            try:
                xs = [tensors[(n, t)] for n, _, t in refs]
            except KeyError as exc:
                self.fail(layer, f"its input {exc.args[0][0]} is not defined before it")
            for i, out in enumerate(self.layer(layer, xs, wp, names)):
                tensors[(layer.get("name") or layer["config"]["name"], i)] = out
        return [tensors[(n, t)] for n, _, t in _refs(conf["output_layers"])]

    def weights(self, layer: dict, wp: list[str], n_min: int) -> list[np.ndarray]:
        found = self.w.get(wp, self._names)
        if len(found) < n_min:
            self.fail(layer, f"expected {n_min} weight arrays in the file, found {len(found)}")
        return [np.asarray(a, dtype=np.float32) for a in found]

    def act(self, x: str, name: str, activation, layer: dict) -> str:
        if activation is None:
            return x
        if isinstance(activation, dict):  # a serialized activation object
            activation = activation.get("config", {}).get("name") or activation.get("class_name", "")
        kind = ACTIVATIONS.get(str(activation).lower(), "?")
        if kind == "?":
            self.fail(layer, f"unsupported activation '{activation}'")
        if kind is None:
            return x
        out = self.b.add("act", [x], f"{name}_{kind}", kind=kind)
        self.shapes[out] = self.shapes[x]
        return out

    def layer(self, layer: dict, xs: list[str], wp: list[str], names: list[str]) -> list[str]:
        if self.should_stop():
            raise Cancelled()
        self.count += 1
        cls = layer["class_name"]
        c = layer.get("config", {})
        name = c.get("name") or layer.get("name") or cls
        if cls in ("Functional", "Sequential", "Model"):
            return self.model(layer, xs, wp, [*names, name])
        self._names = [*names, name]
        if cls in IDENTITY_LAYERS or (cls == "Activation" and c.get("activation") == "linear"):
            return [xs[0]]
        handler = getattr(self, f"k_{cls.lower()}", None)
        if handler is None:
            self.fail(layer, f"unsupported layer type (supported: {', '.join(SUPPORTED)})")
        if c.get("data_format", "channels_last") != "channels_last":
            self.fail(layer, "only channels_last models are supported")
        try:
            out = handler(layer, c, name, xs, wp)
        except (ValueError, IndexError) as exc:
            self.fail(layer, str(exc))
        return [out]

    # -- layers ---------------------------------------------------------------------
    def _conv_pads(self, shape, c, kernel, stride, dilation) -> list[int]:
        if c.get("padding", "valid") == "valid":
            return [0, 0, 0, 0]
        if c.get("padding") != "same":
            raise ValueError(f"padding '{c.get('padding')}' is not supported")
        (t, b), (left, r) = (tf_same_pads(shape[i], kernel[i], stride[i], dilation[i]) for i in (0, 1))
        return [t, b, left, r]

    def _out_shape(self, shape, kernel, stride, pads, dilation, channels) -> tuple:
        h = (shape[0] + pads[0] + pads[1] - (kernel[0] - 1) * dilation[0] - 1) // stride[0] + 1
        w = (shape[1] + pads[2] + pads[3] - (kernel[1] - 1) * dilation[1] - 1) // stride[1] + 1
        return (h, w, channels)

    def k_conv2d(self, layer, c, name, xs, wp):
        ws = self.weights(layer, wp, 1 + bool(c.get("use_bias", True)))
        kernel_w = ws[0]  # (kh, kw, in/groups, out)
        kernel, stride, dil = _pair(c["kernel_size"]), _pair(c.get("strides", 1)), _pair(c.get("dilation_rate", 1))
        shape = self.shapes[xs[0]]
        pads = self._conv_pads(shape, c, kernel, stride, dil)
        bias = ws[1] if c.get("use_bias", True) else None
        out = self.b.conv(xs[0], name, kernel_w.transpose(3, 0, 1, 2), bias, stride, pads, dil, int(c.get("groups", 1)))
        self.shapes[out] = self._out_shape(shape, kernel, stride, pads, dil, kernel_w.shape[3])
        return self.act(out, name, c.get("activation"), layer)

    def _depthwise(self, x, name, dw, c, bias, layer):
        kh, kw, ch, m = dw.shape
        weight = dw.reshape(kh, kw, ch * m).transpose(2, 0, 1)[..., None]  # (C*m, kh, kw, 1)
        kernel, stride, dil = (kh, kw), _pair(c.get("strides", 1)), _pair(c.get("dilation_rate", 1))
        shape = self.shapes[x]
        pads = self._conv_pads(shape, c, kernel, stride, dil)
        out = self.b.conv(x, name, weight, bias, stride, pads, dil, groups=ch)
        self.shapes[out] = self._out_shape(shape, kernel, stride, pads, dil, ch * m)
        return out

    def k_depthwiseconv2d(self, layer, c, name, xs, wp):
        use_bias = c.get("use_bias", True)
        ws = self.weights(layer, wp, 1 + bool(use_bias))
        out = self._depthwise(xs[0], name, ws[0], c, ws[1] if use_bias else None, layer)
        return self.act(out, name, c.get("activation"), layer)

    def k_separableconv2d(self, layer, c, name, xs, wp):
        use_bias = c.get("use_bias", True)
        ws = self.weights(layer, wp, 2 + bool(use_bias))
        dw = self._depthwise(xs[0], f"{name}_depthwise", ws[0], c, None, layer)
        pw = ws[1]  # (1, 1, C*m, F)
        out = self.b.conv(
            dw, f"{name}_pointwise", pw.transpose(3, 0, 1, 2), ws[2] if use_bias else None, (1, 1), [0] * 4
        )
        self.shapes[out] = (*self.shapes[dw][:2], pw.shape[3])
        return self.act(out, name, c.get("activation"), layer)

    def k_batchnormalization(self, layer, c, name, xs, wp):
        axis = c.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) else axis
        rank = len(self.shapes[xs[0]]) + 1
        if axis not in (-1, rank - 1):
            raise ValueError(f"BatchNormalization over axis {axis} is not supported (channels-last only)")
        scale, center = c.get("scale", True), c.get("center", True)
        ws = self.weights(layer, wp, 2 + scale + center)
        i = 0
        gamma = ws[i] if scale else None
        i += scale
        beta = ws[i] if center else None
        i += center
        out = self.b.batchnorm(xs[0], name, gamma, beta, ws[i], ws[i + 1], c.get("epsilon", 1e-3))
        self.shapes[out] = self.shapes[xs[0]]
        return out

    def k_activation(self, layer, c, name, xs, wp):
        return self.act(xs[0], name, c.get("activation"), layer)

    def k_relu(self, layer, c, name, xs, wp):
        if c.get("threshold", 0.0):
            raise ValueError("ReLU with a threshold is not supported")
        slope, top = c.get("negative_slope", 0.0) or 0.0, c.get("max_value")
        x = xs[0]
        if slope:
            x = self.b.add("act", [x], f"{name}_leaky", kind="leaky_relu", alpha=float(slope))
            if top is not None:
                x = self.b.add("act", [x], name, kind="clip", max=float(top))
        elif top is not None and float(top) == 6.0:
            x = self.b.add("act", [x], name, kind="relu6")
        else:
            x = self.b.add("act", [x], name, kind="clip", min=0.0, max=None if top is None else float(top))
        self.shapes[x] = self.shapes[xs[0]]
        return x

    def k_leakyrelu(self, layer, c, name, xs, wp):
        alpha = c.get("negative_slope", c.get("alpha", 0.3))
        out = self.b.add("act", [xs[0]], name, kind="leaky_relu", alpha=float(alpha))
        self.shapes[out] = self.shapes[xs[0]]
        return out

    def k_softmax(self, layer, c, name, xs, wp):
        axis = c.get("axis", -1)
        out = self.b.add("act", [xs[0]], name, kind="softmax", axis=axis if isinstance(axis, int) else axis[0])
        self.shapes[out] = self.shapes[xs[0]]
        return out

    def _merge(self, op, name, xs):
        out = self.b.add(op, xs, name)
        self.shapes[out] = max((self.shapes[x] for x in xs), key=len)
        return out

    def k_add(self, layer, c, name, xs, wp):
        return self._merge("add", name, xs)

    def k_subtract(self, layer, c, name, xs, wp):
        return self._merge("sub", name, xs)

    def k_multiply(self, layer, c, name, xs, wp):
        return self._merge("mul", name, xs)

    def k_maximum(self, layer, c, name, xs, wp):
        return self._merge("max", name, xs)

    def k_minimum(self, layer, c, name, xs, wp):
        return self._merge("min", name, xs)

    def k_average(self, layer, c, name, xs, wp):
        total = self._merge("add", f"{name}_sum", xs)
        k = self.b.add_const(np.array(1.0 / len(xs), np.float32), f"{name}_inv_n")
        return self._merge("mul", name, [total, k])

    def k_concatenate(self, layer, c, name, xs, wp):
        axis = c.get("axis", -1)
        rank = len(self.shapes[xs[0]]) + 1
        axis = axis + rank if axis < 0 else axis
        out = self.b.add("concat", xs, name, axis=axis)
        shape = list(self.shapes[xs[0]])
        shape[axis - 1] = sum(self.shapes[x][axis - 1] for x in xs)
        self.shapes[out] = tuple(shape)
        return out

    def _pool(self, c, name, x, kind):
        kernel = _pair(c.get("pool_size", 2))
        stride = _pair(c.get("strides") or kernel)
        shape = self.shapes[x]
        pads = self._conv_pads(shape, c, kernel, stride, (1, 1))
        out = self.b.add("pool", [x], name, kind=kind, kernel=list(kernel), stride=list(stride), pads=pads,
                         count_include_pad=False)  # fmt: skip
        self.shapes[out] = self._out_shape(shape, kernel, stride, pads, (1, 1), shape[2])
        return out

    def k_maxpooling2d(self, layer, c, name, xs, wp):
        return self._pool(c, name, xs[0], "max")

    def k_averagepooling2d(self, layer, c, name, xs, wp):
        return self._pool(c, name, xs[0], "avg")

    def _global(self, c, name, x, kind):
        keep = bool(c.get("keepdims", False))
        out = self.b.add("global_pool", [x], name, kind=kind, keepdims=keep)
        ch = self.shapes[x][-1]
        self.shapes[out] = (1, 1, ch) if keep else (ch,)
        return out

    def k_globalaveragepooling2d(self, layer, c, name, xs, wp):
        return self._global(c, name, xs[0], "avg")

    def k_globalmaxpooling2d(self, layer, c, name, xs, wp):
        return self._global(c, name, xs[0], "max")

    def k_dense(self, layer, c, name, xs, wp):
        use_bias = c.get("use_bias", True)
        ws = self.weights(layer, wp, 1 + bool(use_bias))
        out = self.b.linear(xs[0], name, ws[0].T, ws[1] if use_bias else None)
        self.shapes[out] = (*self.shapes[xs[0]][:-1], ws[0].shape[1])
        return self.act(out, name, c.get("activation"), layer)

    def _per_channel(self, value, x) -> np.ndarray:
        v = np.asarray(value, dtype=np.float32)
        return v.reshape((1,) * len(self.shapes[x]) + (-1,)) if v.ndim == 1 and v.size > 1 else v.reshape(())

    def k_rescaling(self, layer, c, name, xs, wp):
        scale = self.b.add_const(self._per_channel(c.get("scale", 1.0), xs[0]), f"{name}_scale")
        out = self.b.add("mul", [xs[0], scale], name)
        offset = np.asarray(c.get("offset", 0.0), dtype=np.float32)
        if np.any(offset != 0):
            off = self.b.add_const(self._per_channel(offset, xs[0]), f"{name}_offset")
            out = self.b.add("add", [out, off], f"{name}_shift")
        self.shapes[out] = self.shapes[xs[0]]
        return out

    def k_normalization(self, layer, c, name, xs, wp):
        if c.get("invert"):
            raise ValueError("Normalization(invert=True) is not supported")
        if c.get("mean") is not None and c.get("variance") is not None:
            mean, var = np.asarray(c["mean"], np.float32), np.asarray(c["variance"], np.float32)
        else:
            mean, var = self.weights(layer, wp, 2)[:2]
        mean = self._per_channel(mean.reshape(-1), xs[0])
        inv = 1.0 / np.maximum(np.sqrt(self._per_channel(var.reshape(-1), xs[0])), 1e-7)
        m = self.b.add_const(mean, f"{name}_mean")
        s = self.b.add_const(inv.astype(np.float32), f"{name}_inv_std")
        out = self.b.add("mul", [self.b.add("sub", [xs[0], m], f"{name}_centre"), s], name)
        self.shapes[out] = self.shapes[xs[0]]
        return out

    def k_zeropadding2d(self, layer, c, name, xs, wp):
        p = c.get("padding", 1)
        if isinstance(p, int):
            (t, b), (left, r) = (p, p), (p, p)
        elif isinstance(p[0], int):
            (t, b), (left, r) = (p[0], p[0]), (p[1], p[1])
        else:
            (t, b), (left, r) = p
        out = self.b.add("pad", [xs[0]], name, pads=[t, b, left, r], value=0.0)
        h, w, ch = self.shapes[xs[0]]
        self.shapes[out] = (None if h is None else h + t + b, None if w is None else w + left + r, ch)
        return out

    def k_flatten(self, layer, c, name, xs, wp):
        out = self.b.add("flatten", [xs[0]], name, axis=1)
        self.shapes[out] = (int(np.prod(self.shapes[xs[0]])),)
        return out

    def k_reshape(self, layer, c, name, xs, wp):
        target = [int(s) for s in c["target_shape"]]
        out = self.b.add("reshape", [xs[0]], name, shape=target, keep_batch=True)
        if -1 in target:
            known = int(np.prod([s for s in target if s != -1]))
            target[target.index(-1)] = int(np.prod(self.shapes[xs[0]])) // known
        self.shapes[out] = tuple(target)
        return out


def _input_shape(cfg: dict, path: Path) -> tuple:
    """(H, W, C) of a model config's (first) input layer."""
    conf = cfg.get("config", cfg)
    for layer in conf.get("layers", []):
        lc = layer.get("config", {})
        shape = lc.get("batch_shape") or lc.get("batch_input_shape")
        if shape is None and cfg.get("class_name") == "Sequential":
            shape = conf.get("build_input_shape")
        if shape is not None:
            if len(shape) != 4:
                raise UserError(f"the model's input has shape {shape}; an image input (N, H, W, C) is expected", path)
            return tuple(shape[1:])
        if layer["class_name"] in ("Functional", "Sequential", "Model"):
            return _input_shape(layer, path)
    shape = conf.get("build_input_shape")
    if shape:
        return tuple(shape[1:])
    raise UserError("cannot find the model's input shape in its config", path)


def read_keras_file(path: Path) -> tuple[dict, object, object]:
    """(model config, weights reader, file handle to close) of a .keras or .h5 file."""
    h5py = require("h5py", path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                # Stated sizes and ratios pass a budget before a member is inflated (zip bombs).
                cfg = json.loads(read_zip_member(z, "config.json", path))
                if "model.weights.h5" not in z.namelist():
                    raise UserError("this .keras archive has no model.weights.h5 (the weights)", path)
                data = read_zip_member(z, "model.weights.h5", path, factor=IMPORT_FACTOR)
        except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, OSError) as exc:
            raise UserError(f"not a readable .keras archive ({exc})", path) from None
        check_hdf5(data, path)  # the superblock's stated sizes, before h5py's C library follows them
        h5 = h5py.File(io.BytesIO(data), "r")
        return cfg, _Keras3Weights(h5), h5
    check_hdf5(path, path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"not a Keras .keras or HDF5 file ({exc})", path) from None
    raw = h5.attrs.get("model_config")
    if raw is None:
        h5.close()
        raise UserError("this HDF5 file holds weights only (no model_config); save the whole model", path)
    cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    return cfg, _LegacyWeights(h5["model_weights"] if "model_weights" in h5 else h5), h5


def import_keras(
    path: str | Path,
    labels: list[str] | None = None,
    name: str | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ModelBundle:
    """Rebuild a Keras functional/sequential image classifier in MLX.

    Raises:
        UserError: unreadable file, an unsupported layer (named), weights missing or
            of the wrong shape, or a model whose input is not an image.
    """
    path, report, stop = open_source(path, "Keras", progress, should_stop)
    report(0.0, f"reading {path.name}")
    cfg, weights, handle = read_keras_file(path)
    try:
        if cfg.get("class_name") not in ("Functional", "Sequential", "Model"):
            raise UserError(
                f"model class '{cfg.get('class_name')}' is a subclassed model; only Functional and Sequential "
                "models carry their graph in the file",
                path,
            )
        h, w, c = _input_shape(cfg, path)
        if c not in (1, 3):
            raise UserError(f"the model takes {c}-channel images; 1 or 3 channels are supported", path)
        conv = _Converter(weights, path, stop)
        conv.b._names.add("input")
        conv.shapes["input"] = (h, w, c)
        report(0.1, "rebuilding the graph")
        (out,) = conv.model(cfg, ["input"], [], [])[:1]
    finally:
        handle.close()
    # A closing softmax is dropped: bundles output logits and the app applies softmax itself.
    last = conv.b.nodes[-1] if conv.b.nodes else None
    if last is not None and last["name"] == out and last["op"] == "act" and last["attrs"].get("kind") == "softmax":
        out = last["inputs"][0]
        conv.b.nodes.pop()
        conv.softmax_removed = True
    shape = conv.shapes.get(out) or ()
    if len(shape) != 1:
        raise UserError(f"the model's output has shape {shape}; a (N, classes) classifier output is expected", path)
    starts_scaled = any(n["name"].endswith(("_scale", "_mean")) for n in conv.b.nodes[:3])
    prep = Preprocessing(
        input_size=(h or 224, w or 224),
        channels=c,
        resize="stretch",
        scale="raw" if starts_scaled else "unit",
    )
    report(0.8, "loading weights")
    extra = {"softmax_removed": conv.softmax_removed, "keras_class": cfg.get("class_name")}
    return conv.b.bundle("input", (h or 224, w or 224, c), out, int(shape[0]), labels, name, path, prep, extra)
