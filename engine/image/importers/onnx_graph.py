"""Import an ONNX CNN graph (NCHW) as an MLX graph model (NHWC), reading the file with the ``onnx`` package.

Layout: every 4-D value that ONNX sees as NCHW is kept physically NHWC
("nhwc" tag). Convolutions, BatchNorm, pooling and elementwise ops work on it
directly (constants and axes are permuted to match); ops whose meaning depends
on the memory order (Flatten, Reshape, Transpose, Gemm, MatMul...) first get a
transpose back to NCHW, so results equal the ONNX graph's exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.core.native_gate import check_onnx
from engine.image.bundle import ModelBundle
from engine.image.data.preprocess import Preprocessing
from engine.image.importers.graph_builder import GraphBuilder, open_source, require

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)
# Logical NCHW axis -> physical NHWC axis.
AXIS_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}

ACTIVATION_OPS = {
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "HardSwish": "hardswish",
    "Tanh": "tanh",
    "Softplus": "softplus",
    "Erf": "erf",
}
# Shape arithmetic a PyTorch transformer export carries; evaluated with numpy at import (static input size).
FOLD_ONLY = ("Shape", "ConstantOfShape", "Equal", "Where", "Expand", "Mod", "Slice", "Sqrt")
ELEMENTWISE_OPS = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min"}
SUPPORTED = sorted(
    {
        *ACTIVATION_OPS,
        *ELEMENTWISE_OPS,
        "Conv",
        "BatchNormalization",
        "Clip",
        "LeakyRelu",
        "Elu",
        "HardSigmoid",
        "Concat",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Gemm",
        "MatMul",
        "Flatten",
        "Reshape",
        "Transpose",
        "Softmax",
        "Pad",
        "ReduceMean",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Dropout",
        "Constant",
        "Cast",
        "LayerNormalization",
        "Gather",
        *FOLD_ONLY,
    }
)
NUMPY_FOLD = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Identity": lambda x: x,
}


class _Converter:
    def __init__(self, model, path: Path):
        from onnx import numpy_helper

        self.path = path
        self.g = model.graph
        self.b = GraphBuilder("onnx")
        self.np_helper = numpy_helper
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in self.g.initializer}
        self.values: dict[str, str] = {}  # onnx value -> builder node name
        self.tags: dict[str, str] = {}  # builder node name -> "nhwc" | "plain"
        self.ranks: dict[str, int] = {}
        self.shapes: dict[str, list] = {}
        for vi in [*self.g.value_info, *self.g.input, *self.g.output]:
            dims = vi.type.tensor_type.shape.dim
            self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        self._plain_cache: dict[str, str] = {}
        self._nhwc_cache: dict[str, str] = {}

    # -- values and layouts ----------------------------------------------------------
    def fail(self, node, why: str):
        raise UserError(f"ONNX node '{node.name or node.op_type}' ({node.op_type}): {why}", self.path)

    def attrs(self, node) -> dict:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def rank(self, name: str) -> int:
        return self.ranks[name]

    def nhwc(self, name: str) -> str:
        if self.tags[name] == "nhwc" or self.ranks[name] != 4:
            return name
        if name not in self._nhwc_cache:
            out = self.b.add("transpose", [name], f"{name}_nhwc", perm=list(TO_NHWC))
            self.tags[out], self.ranks[out] = "nhwc", 4
            self._nhwc_cache[name] = out
        return self._nhwc_cache[name]

    def plain(self, name: str) -> str:
        if self.tags[name] != "nhwc":
            return name
        if name not in self._plain_cache:
            out = self.b.add("transpose", [name], f"{name}_nchw", perm=list(TO_NCHW))
            self.tags[out], self.ranks[out] = "plain", 4
            self._plain_cache[name] = out
        return self._plain_cache[name]

    def set(self, onnx_name: str, node_name: str, tag: str, rank: int) -> None:
        self.values[onnx_name] = node_name
        self.tags[node_name] = tag
        self.ranks[node_name] = rank

    def get(self, node, i: int) -> str:
        name = node.input[i]
        if name in self.values:
            return self.values[name]
        if name in self.consts:
            value = self.consts[name]
            out = self.b.add_const(value, name)
            self.set(name, out, "plain", value.ndim)
            return out
        self.fail(node, f"input '{name}' is not produced by any earlier node")

    def const_input(self, node, i: int) -> np.ndarray | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        name = node.input[i]
        if name not in self.consts:
            self.fail(node, f"input '{name}' must be a constant (an initializer)")
        return self.consts[name]

    # -- ops -----------------------------------------------------------------------------
    def spatial_pads(self, node, a: dict, kernel, stride, dilation=(1, 1)) -> list[int]:
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", "VALID"):
            p = list(a.get("pads", [0, 0, 0, 0])) if auto == "NOTSET" else [0, 0, 0, 0]
            return [p[0], p[2], p[1], p[3]]  # ONNX (t, l, b, r) -> (t, b, l, r)
        shape = self.shapes.get(node.input[0])
        if not shape or None in shape[2:]:
            self.fail(node, "auto_pad SAME needs static input shapes")
        pads = []
        for size, k, s, d in zip(shape[2:], kernel, stride, dilation, strict=True):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return [pads[0][0], pads[0][1], pads[1][0], pads[1][1]]

    def op_conv(self, node, a):
        w = self.const_input(node, 1)
        bias = self.const_input(node, 2)
        kernel = w.shape[2:]
        stride = a.get("strides", [1, 1])
        dilation = a.get("dilations", [1, 1])
        pads = self.spatial_pads(node, a, kernel, stride, dilation)
        x = self.nhwc(self.get(node, 0))
        out = self.b.conv(
            x, node.name or "conv", w.transpose(0, 2, 3, 1), bias, stride, pads, dilation, a.get("group", 1)
        )
        return out, "nhwc", 4

    def op_batchnormalization(self, node, a):
        gamma, beta, mean, var = (self.const_input(node, i) for i in range(1, 5))
        x = self.get(node, 0)
        rank = self.rank(x)
        x = self.nhwc(x) if rank == 4 else x
        if rank not in (2, 4):
            self.fail(node, f"BatchNormalization on rank-{rank} input is not supported")
        out = self.b.batchnorm(x, node.name or "bn", gamma, beta, mean, var, a.get("epsilon", 1e-5))
        return out, self.tags[x], rank

    def _act(self, node, kind: str, **attrs):
        x = self.get(node, 0)
        return self.b.add("act", [x], node.name or kind, kind=kind, **attrs), self.tags[x], self.rank(x)

    def op_clip(self, node, a):
        lo = self.const_input(node, 1) if len(node.input) > 1 else None
        hi = self.const_input(node, 2) if len(node.input) > 2 else None
        lo = float(lo) if lo is not None else a.get("min")
        hi = float(hi) if hi is not None else a.get("max")
        return self._act(node, "clip", min=lo, max=hi)

    def op_leakyrelu(self, node, a):
        return self._act(node, "leaky_relu", alpha=a.get("alpha", 0.01))

    def op_elu(self, node, a):
        return self._act(node, "elu", alpha=a.get("alpha", 1.0))

    def op_hardsigmoid(self, node, a):
        return self._act(node, "hardsigmoid", alpha=a.get("alpha", 0.2), beta=a.get("beta", 0.5))

    def op_softmax(self, node, a):
        x = self.get(node, 0)
        rank = self.rank(x)
        axis = a.get("axis", -1)
        axis = axis + rank if axis < 0 else axis
        if self.tags[x] == "nhwc":
            axis = AXIS_NHWC[axis]
        return self.b.add("act", [x], node.name or "softmax", kind="softmax", axis=axis), self.tags[x], rank

    def elementwise(self, node, op: str):
        ins = []
        tensor_ins = [n for n in node.input if n not in self.consts]
        if not tensor_ins:
            self.fail(node, "constant-only arithmetic is not supported")
        xs = [self.get(node, i) if n not in self.consts else None for i, n in enumerate(node.input)]
        nhwc = any(x is not None and self.tags[x] == "nhwc" for x in xs)
        rank = max(self.rank(x) if x is not None else self.consts[n].ndim for x, n in zip(xs, node.input, strict=True))
        for x, n in zip(xs, node.input, strict=True):
            if x is None:
                c = self.consts[n]
                if nhwc and c.ndim > 0:
                    c = c.reshape((1,) * (4 - c.ndim) + c.shape).transpose(TO_NHWC)
                ins.append(self.b.add_const(c, f"{node.name or op}_{n}"))
            else:
                ins.append(self.nhwc(x) if nhwc else x)
        return self.b.add(op, ins, node.name or op), "nhwc" if nhwc else "plain", rank

    def op_concat(self, node, a):
        xs = [self.get(node, i) for i in range(len(node.input))]
        rank = self.rank(xs[0])
        axis = a["axis"] + rank if a["axis"] < 0 else a["axis"]
        if rank == 4 and any(self.tags[x] == "nhwc" for x in xs):
            xs = [self.nhwc(x) for x in xs]
            return self.b.add("concat", xs, node.name or "concat", axis=AXIS_NHWC[axis]), "nhwc", 4
        return self.b.add("concat", xs, node.name or "concat", axis=axis), "plain", rank

    def _pool(self, node, a, kind):
        kernel = a["kernel_shape"]
        stride = a.get("strides", [1, 1])
        if a.get("dilations", [1, 1]) != [1, 1]:
            self.fail(node, "dilated pooling is not supported")
        pads = self.spatial_pads(node, a, kernel, stride)
        if a.get("ceil_mode", 0):
            shape = self.shapes.get(node.input[0])
            if not shape or None in shape[2:]:
                self.fail(node, "ceil_mode needs static input shapes")
            for d, (size, k, s) in enumerate(zip(shape[2:], kernel, stride, strict=True)):
                padded = size + pads[2 * d] + pads[2 * d + 1]
                extra = (-(-(padded - k) // s)) * s + k - padded
                # PyTorch/ONNX drop a last window that would start in the padding.
                if (-(-(padded - k) // s)) * s >= size + pads[2 * d]:
                    extra -= s
                if extra > 0 and kind == "avg":
                    self.fail(node, "AveragePool with ceil_mode is not supported")
                pads[2 * d + 1] += max(extra, 0)
        x = self.nhwc(self.get(node, 0))
        attrs = dict(kind=kind, kernel=list(kernel), stride=list(stride), pads=pads)
        if kind == "avg":
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        return self.b.add("pool", [x], node.name or f"{kind}pool", **attrs), "nhwc", 4

    def op_maxpool(self, node, a):
        if len(node.output) > 1 and node.output[1]:
            self.fail(node, "MaxPool indices output is not supported")
        return self._pool(node, a, "max")

    def op_averagepool(self, node, a):
        return self._pool(node, a, "avg")

    def op_globalaveragepool(self, node, a):
        x = self.nhwc(self.get(node, 0))
        return self.b.add("global_pool", [x], node.name or "gap", kind="avg", keepdims=True), "nhwc", 4

    def op_globalmaxpool(self, node, a):
        x = self.nhwc(self.get(node, 0))
        return self.b.add("global_pool", [x], node.name or "gmp", kind="max", keepdims=True), "nhwc", 4

    def op_gemm(self, node, a):
        if a.get("transA", 0):
            self.fail(node, "Gemm with transA=1 is not supported")
        w = self.const_input(node, 1)
        w = w if a.get("transB", 0) else w.T
        w = w * a.get("alpha", 1.0)
        c = self.const_input(node, 2)
        bias = None
        if c is not None:
            bias = np.broadcast_to(c * a.get("beta", 1.0), (w.shape[0],)).astype(np.float32)
        x = self.plain(self.get(node, 0))
        return self.b.linear(x, node.name or "gemm", w, bias), "plain", 2

    def op_matmul(self, node, a):
        x = self.plain(self.get(node, 0))
        if node.input[1] in self.consts and self.consts[node.input[1]].ndim == 2:
            w = self.consts[node.input[1]].T
            return self.b.linear(x, node.name or "matmul", w, None), "plain", self.rank(x)
        y = self.plain(self.get(node, 1))
        return self.b.add("matmul", [x, y], node.name or "matmul"), "plain", max(self.rank(x), self.rank(y))

    def op_layernormalization(self, node, a):
        """LayerNormalization over the last axis with constant scale and bias (ConvNeXt, transformers)."""
        x = self.get(node, 0)
        rank = self.rank(x)
        axis = a.get("axis", -1)
        if axis not in (-1, rank - 1):
            self.fail(node, f"LayerNormalization over axis {axis} is not supported (only the last axis)")
        scale = self.const_input(node, 1)
        bias = self.const_input(node, 2) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            self.fail(node, "LayerNormalization with a computed scale is not supported")
        x = self.plain(x)  # the last axis of the ONNX tensor, whatever layout it came in
        c = int(scale.shape[-1])
        params = {"weight": scale.reshape(c), "bias": bias.reshape(c) if bias is not None else np.zeros(c, np.float32)}
        out = self.b.add_param(
            "layer_norm", [x], node.name or "layer_norm", params, channels=c, eps=a.get("epsilon", 1e-5)
        )
        return out, "plain", rank

    def op_flatten(self, node, a):
        x = self.get(node, 0)
        axis = a.get("axis", 1)
        axis = axis + self.rank(x) if axis < 0 else axis
        if self.tags[x] == "nhwc" and self.shapes_are_1x1(node.input[0]):
            # (N, 1, 1, C) flattens the same in either layout; skip the transpose.
            return self.b.add("flatten", [x], node.name or "flatten", axis=axis), "plain", 2
        return self.b.add("flatten", [self.plain(x)], node.name or "flatten", axis=axis), "plain", 2

    def shapes_are_1x1(self, onnx_name: str) -> bool:
        shape = self.shapes.get(onnx_name)
        return bool(shape) and len(shape) == 4 and shape[2] == 1 and shape[3] == 1

    def op_reshape(self, node, a):
        shape = [int(s) for s in self.const_input(node, 1)]
        x = self.plain(self.get(node, 0))
        zero_copies = not a.get("allowzero", 0)
        return (
            self.b.add("reshape", [x], node.name or "reshape", shape=shape, zero_copies=zero_copies),
            "plain",
            len(shape),
        )

    def op_transpose(self, node, a):
        x = self.plain(self.get(node, 0))
        perm = a.get("perm") or list(reversed(range(self.rank(x))))
        return self.b.add("transpose", [x], node.name or "transpose", perm=list(perm)), "plain", len(perm)

    def _axes(self, node, a) -> list[int]:
        if "axes" in a:
            return list(a["axes"])
        c = self.const_input(node, 1) if len(node.input) > 1 and node.input[1] else None
        return [int(v) for v in c] if c is not None else []

    def op_squeeze(self, node, a):
        x = self.plain(self.get(node, 0))
        axes = [ax + self.rank(x) if ax < 0 else ax for ax in self._axes(node, a)]
        return self.b.add("squeeze", [x], node.name or "squeeze", axes=axes), "plain", self.rank(x) - len(axes)

    def op_unsqueeze(self, node, a):
        x = self.plain(self.get(node, 0))
        out_rank = self.rank(x) + len(self._axes(node, a))
        axes = [ax + out_rank if ax < 0 else ax for ax in self._axes(node, a)]
        return self.b.add("unsqueeze", [x], node.name or "unsqueeze", axes=axes), "plain", out_rank

    def op_reducemean(self, node, a):
        x = self.get(node, 0)
        rank = self.rank(x)
        axes = [ax + rank if ax < 0 else ax for ax in (self._axes(node, a) or list(range(rank)))]
        keep = bool(a.get("keepdims", 1))
        if self.tags[x] == "nhwc" and sorted(axes) == [2, 3]:
            tag = "nhwc" if keep else "plain"
            return self.b.add("mean", [x], node.name or "mean", axes=[1, 2], keepdims=keep), tag, 4 if keep else 2
        x = self.plain(x)
        return (
            self.b.add("mean", [x], node.name or "mean", axes=axes, keepdims=keep),
            "plain",
            rank if keep else rank - len(axes),
        )

    def op_pad(self, node, a):
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            self.fail(node, f"Pad mode '{mode}' is not supported (constant only)")
        pads = list(a["pads"]) if "pads" in a else [int(v) for v in self.const_input(node, 1)]
        value = a.get("value", 0.0)
        if len(node.input) > 2 and node.input[2]:
            value = float(self.const_input(node, 2))
        x = self.get(node, 0)
        if self.rank(x) != 4 or pads[0] or pads[1] or pads[4] or pads[5]:
            self.fail(node, "only spatial padding of 4-D tensors is supported")
        x = self.nhwc(x)
        return (
            self.b.add("pad", [x], node.name or "pad", pads=[pads[2], pads[6], pads[3], pads[7]], value=value),
            "nhwc",
            4,
        )

    def op_identity(self, node, a):
        x = self.get(node, 0)
        return x, self.tags[x], self.rank(x)

    op_dropout = op_identity

    def op_cast(self, node, a):
        from onnx import TensorProto

        if a.get("to") not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16):
            self.fail(node, "Cast of a computed tensor to a non-float type is not supported")
        return self.op_identity(node, a)

    def fold(self, node, a) -> np.ndarray | None:
        """Evaluate a node whose inputs are all constants (shape arithmetic, casts) with numpy."""
        from onnx import helper

        xs = [self.consts[n] for n in node.input if n]
        if node.op_type == "Cast":
            return xs[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))
        if node.op_type in NUMPY_FOLD:
            out = xs[0]
            for y in xs[1:]:
                out = NUMPY_FOLD[node.op_type](out, y)
            return np.asarray(out)
        if node.op_type == "Unsqueeze":
            axes = a.get("axes") or [int(v) for v in xs[1]]
            return np.expand_dims(xs[0], tuple(axes))
        if node.op_type == "Reshape":
            return xs[0].reshape([int(v) for v in xs[1]])
        if node.op_type == "Concat":
            return np.concatenate(xs, axis=a["axis"])
        return self._fold_shape_ops(node, a, xs)

    def _fold_shape_ops(self, node, a, xs) -> np.ndarray | None:
        """The shape arithmetic of PyTorch exports (class-token expansion, attention reshapes)."""
        from onnx import numpy_helper

        op = node.op_type
        if op == "ConstantOfShape":
            value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            return np.full([int(v) for v in xs[0]], value.reshape(-1)[0], dtype=value.dtype)
        if op == "Equal":
            return np.equal(xs[0], xs[1])
        if op == "Where":
            return np.where(xs[0], xs[1], xs[2])
        if op == "Expand":
            shape = np.broadcast_shapes(xs[0].shape, tuple(int(v) for v in xs[1]))
            return np.broadcast_to(xs[0], shape).copy()
        if op == "Mod":
            return np.fmod(xs[0], xs[1]) if a.get("fmod") else np.mod(xs[0], xs[1])
        if op == "Sqrt":
            return np.sqrt(xs[0])
        if op == "Gather":
            return np.take(xs[0], xs[1].astype(np.int64), axis=a.get("axis", 0))
        if op == "Squeeze":
            axes = a.get("axes") or ([int(v) for v in xs[1]] if len(xs) > 1 else None)
            return np.squeeze(xs[0], axis=tuple(axes) if axes else None)
        if op == "Slice":
            data, starts, ends = xs[0], xs[1], xs[2]
            axes = xs[3] if len(xs) > 3 else np.arange(len(starts))
            steps = xs[4] if len(xs) > 4 else np.ones(len(starts), np.int64)
            index = [slice(None)] * data.ndim
            for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
                index[int(ax)] = slice(int(st), int(en), int(sp))
            return data[tuple(index)]
        return None

    def op_gather(self, node, a):
        """Gather of a computed tensor at constant indices (a ViT's class token, split q/k/v)."""
        indices = self.const_input(node, 1)
        x = self.plain(self.get(node, 0))
        axis = a.get("axis", 0)
        axis = axis + self.rank(x) if axis < 0 else axis
        out = self.b.add("gather", [x], node.name or "gather", axis=axis, indices=indices.astype(int).tolist())
        return out, "plain", self.rank(x) - 1 + indices.ndim

    # -- the whole graph -----------------------------------------------------------------
    def convert(self, progress, should_stop) -> tuple[str, str, tuple[int, int, int], int]:
        inputs = [i for i in self.g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UserError(f"the graph has {len(inputs)} inputs; one image input is supported", self.path)
        inp = inputs[0]
        shape = self.shapes[inp.name]
        if len(shape) != 4:
            raise UserError(f"input '{inp.name}' has rank {len(shape)}; an NCHW image input is expected", self.path)
        c, h, w = (s or 0 for s in shape[1:])
        if not c:
            raise UserError(f"input '{inp.name}' has no static channel count", self.path)
        self.b._names.add(inp.name)
        self.set(inp.name, inp.name, "nhwc", 4)
        unsupported = sorted({n.op_type for n in self.g.node if n.op_type not in SUPPORTED})
        if unsupported:
            names = {n.op_type: n.name for n in self.g.node if n.op_type in unsupported}
            listed = ", ".join(f"{t} (node '{names[t]}')" for t in unsupported)
            raise UserError(f"unsupported ONNX operators: {listed}; supported: {', '.join(SUPPORTED)}", self.path)
        nodes = list(self.g.node)
        # A trailing Softmax is dropped: the bundle's outputs are logits (the app applies softmax itself).
        out_name = self.g.output[0].name
        softmax_removed = False
        if nodes and nodes[-1].op_type == "Softmax" and nodes[-1].output[0] == out_name:
            out_name = nodes[-1].input[0]
            nodes = nodes[:-1]
            softmax_removed = True
        for i, node in enumerate(nodes):
            if should_stop():
                raise Cancelled()
            a = self.attrs(node)
            if node.op_type == "Constant":
                value = a.get("value")
                if value is None:
                    self.fail(node, "only tensor constants are supported")
                self.consts[node.output[0]] = self.np_helper.to_array(value)
                continue
            if node.op_type == "Shape":
                self.consts[node.output[0]] = self._static_shape(node)
                continue
            if node.input and all(n in self.consts for n in node.input if n):
                folded = self.fold(node, a)
                if folded is not None:
                    self.consts[node.output[0]] = folded
                    continue
            if node.op_type in FOLD_ONLY:
                self.fail(node, "shape arithmetic on a computed tensor is not supported (export with a fixed size)")
            if node.op_type in ACTIVATION_OPS:
                out, tag, rank = self._act(node, ACTIVATION_OPS[node.op_type])
            elif node.op_type in ELEMENTWISE_OPS:
                out, tag, rank = self.elementwise(node, ELEMENTWISE_OPS[node.op_type])
            else:
                out, tag, rank = getattr(self, f"op_{node.op_type.lower()}")(node, a)
            self.set(node.output[0], out, tag, rank)
            progress(0.1 + 0.6 * (i + 1) / len(nodes), f"{node.op_type} {node.name}")
        out = self.values.get(out_name)
        if out is None:
            raise UserError(f"graph output '{out_name}' is not computed by the graph", self.path)
        out = self.plain(out)
        if self.rank(out) != 2:
            out = self.b.add("flatten", [out], "output_flatten", axis=1)
        self.softmax_removed = softmax_removed
        return inp.name, out, (h or 224, w or 224, c), self._classes(out_name)

    def _static_shape(self, node) -> np.ndarray:
        name = node.input[0]
        if name in self.consts:
            shape = list(self.consts[name].shape)
        else:
            shape = self.shapes.get(name)
        if not shape or any(not d for d in shape):
            self.fail(node, "Shape of a tensor whose size is not static (export with a fixed input size)")
        self.b.input_attrs["batch_one"] = True  # the folded shapes carry the exported batch
        a = self.attrs(node)
        return np.asarray(shape, dtype=np.int64)[a.get("start", 0) : a.get("end")]

    def _classes(self, out_name: str) -> int:
        shape = self.shapes.get(out_name) or self.shapes.get(self.g.output[0].name)
        if shape and shape[-1]:
            return int(shape[-1])
        raise UserError("cannot tell the number of classes from the graph output's shape", self.path)


def import_onnx(
    path: str | Path,
    labels: list[str] | None = None,
    name: str | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ModelBundle:
    """Read an ONNX file and rebuild its graph in MLX.

    Raises:
        UserError: unreadable file, more than one input, unsupported operators
            (named with their nodes), or shapes that do not fit.
    """
    path, report, stop = open_source(path, "ONNX", progress, should_stop)
    onnx = require("onnx", path)
    report(0.0, f"reading {path.name}")
    check_onnx(path)  # size against protobuf's limit and the memory budget before the native parser
    try:
        model = onnx.load(str(path))
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"not a readable ONNX model ({first[:160]})", path) from None
    conv = _Converter(model, path)
    input_name, output, (h, w, c), num_classes = conv.convert(report, stop)
    report(0.75, "loading weights")
    prep = Preprocessing(input_size=(h, w), channels=3 if c == 3 else 1, resize="stretch", scale="unit")
    if c not in (1, 3):
        raise UserError(f"the graph takes {c}-channel images; 1 or 3 channels are supported", path)
    extra = {"softmax_removed": conv.softmax_removed, "opset": int(model.opset_import[0].version)}
    return conv.b.bundle(input_name, (h, w, c), output, num_classes, labels, name, path, prep, extra)
