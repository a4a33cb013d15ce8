"""Full-integer simulation: the model as ONNX Runtime's static QDQ quantization deploys it, fake-quantized in MLX.

Where :mod:`engine.image.quant.actsim` quantizes only the inputs of weight layers, this reproduces the
graph a full-integer runtime executes (ORT ``quantize_static``, QDQ format, ``per_channel=True``):

- BatchNorm folded into the convolution before it; weights int8, symmetric, one scale per output
  channel; biases int32 with scale ``input_scale * weight_scale``; a BatchNorm that cannot fold
  (DenseNet's pre-activation) keeps float mean/variance with an int8 gamma and int32 beta, as ORT's;
- one (scale, zero point) per *tensor*, asymmetric uint8 (or int8), for the model input and the
  output of every op: convolutions and Linear (after their fused ReLU/ReLU6: ORT removes the
  activation and quantizes with the activation's range), additions, concatenations, global pooling,
  unfused BatchNorms and the model output; average pooling requantizes with its input's parameters
  and max pooling, padding and reshapes keep them, as ORT's "direct 8-bit" ops do;
- ranges from the float model on the calibration images (observers in :mod:`engine.image.quant.observers`),
  ORT's rounding (half to even) and zero-point rule (:mod:`engine.image.quant.intsim_math`).

:func:`layer_errors` tells which tensor's quantization costs most.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.quant.intgraph import WEIGHT_OPS, IntGraph, Op, fold_batchnorm, lower, mx_params, run
from engine.image.quant.intsim_math import (
    ACT_TYPES,
    fake_quant,
    qparams,
    quantize_bias,
    quantize_per_tensor,
    quantize_weight,
)
from engine.image.quant.observers import ObserverSettings, TensorObserver

KEEP_OPS = ("reshape", "flatten", "transpose", "squeeze", "unsqueeze", "identity", "pad")
REMOVABLE_ACTS = ("relu", "relu6", "clip")


@dataclass(frozen=True)
class IntSimSettings:
    """Full-integer simulation settings.

    Attributes:
        observer: how tensor ranges are chosen.
        act_type: uint8 or int8 activations (ORT's QuantType.QUInt8 / QInt8).
        calib: number of calibration images.
        seed: which calibration images are drawn when there are more.
    """

    observer: ObserverSettings = field(default_factory=ObserverSettings)
    act_type: str = "uint8"
    calib: int = 128
    seed: int = 0

    def validate(self) -> None:
        self.observer.validate()
        if self.act_type not in ACT_TYPES:
            raise UserError(f"activation type must be uint8 or int8, not '{self.act_type}'")
        if self.calib < 1:
            raise UserError(f"calibration needs at least one image, not {self.calib}")

    def label(self) -> str:
        return (
            f"full-integer (int8 per-channel weights, {self.act_type} per-tensor activations, "
            f"{self.observer.label()}, {self.calib} calibration images)"
        )


@dataclass(frozen=True)
class TensorQuant:
    """The static quantization of one tensor (``tensor`` is the op that makes it, or the graph input)."""

    tensor: str
    op: str
    lo: float
    hi: float
    scale: float
    zero_point: int


@dataclass(frozen=True)
class QuantPlan:
    """Which tensors are quantized: ``own`` get their calibrated range, ``same`` requantize with another's."""

    own: tuple[str, ...]
    same: tuple[tuple[str, str], ...]
    alias: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class IntCalibration:
    settings: IntSimSettings
    graph: IntGraph
    plan: QuantPlan
    tensors: tuple[TensorQuant, ...]
    n_images: int

    def table(self) -> dict[str, TensorQuant]:
        return {t.tensor: t for t in self.tensors}


def plan_quantization(graph: IntGraph) -> QuantPlan:
    """The tensors ORT's QDQ quantizer gives a QuantizeLinear/DequantizeLinear pair, on a folded graph."""
    consumers = graph.consumers()
    by_name = {op.name: op for op in graph.ops}
    own: list[str] = [graph.input]
    same: dict[str, str] = {}
    alias: dict[str, str] = {}

    def source(t: str) -> str:
        return alias.get(t, t)

    for op in graph.ops:
        if op.op == "const":
            continue
        if op.op in KEEP_OPS or (op.op == "pool" and op.attrs.get("kind") == "max"):
            alias[op.name] = source(op.inputs[0])
        elif op.op == "pool":
            same[op.name] = source(op.inputs[0])
        else:
            if op.op == "act" and op.attrs.get("kind") in REMOVABLE_ACTS:
                up = by_name.get(op.inputs[0])
                if up is not None and op.inputs[0] in own and len(consumers[up.name]) == 1 and up.op != "const":
                    own.remove(up.name)  # ORT removes the activation: its range becomes the producer's
            own.append(op.name)
    return QuantPlan(tuple(own), tuple(same.items()), tuple(alias.items()))


def prepare(model: nn.Module) -> IntGraph:
    """The folded op graph of a float model (see :func:`engine.image.quant.intgraph.lower`)."""
    from engine.image.quant.layers import QUANTIZED_TYPES

    if any(isinstance(m, QUANTIZED_TYPES) for _, m in model.named_modules()):
        raise UserError("full-integer simulation starts from a float model; this one is already quantized")
    return fold_batchnorm(lower(model))


def _batches(x: np.ndarray, batch_size: int, should_stop):
    for start in range(0, x.shape[0], batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled()
        yield mx.array(x[start : start + batch_size])


def calibrate_fullint(
    model: nn.Module | IntGraph,
    images: np.ndarray,
    settings: IntSimSettings,
    batch_size: int = 32,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> IntCalibration:
    """Fix every tensor's (scale, zero point) from float activations on ``images`` (NHWC, preprocessed).

    ``images`` are all used: draw ``settings.calib`` of them beforehand (``LabelledImages.subset``).

    Raises:
        UserError: bad settings, an unsupported model, or no image; Cancelled: should_stop() turned true.
    """
    settings.validate()
    if images.shape[0] == 0:
        raise UserError("no calibration image")
    graph = model if isinstance(model, IntGraph) else prepare(model)
    plan = plan_quantization(graph)
    params = mx_params(graph)
    observers = {t: TensorObserver(settings.observer) for t in plan.own}
    passes = ("range", "histogram") if settings.observer.needs_histogram else ("range",)
    for k, which in enumerate(passes):
        if progress is not None:
            progress(k / len(passes), f"{settings.observer.name}: {which} pass on {images.shape[0]} images")

        def see(name: str, y: mx.array, which=which) -> None:
            obs = observers.get(name)
            if obs is not None:
                arr = np.array(y, dtype=np.float32)
                obs.see_range(arr) if which == "range" else obs.see_histogram(arr)

        def on_input(x, see=see):
            see(graph.input, x)
            return x

        def on_output(op, y, see=see):
            see(op.name, y)
            return y

        for xb in _batches(images, batch_size, should_stop):
            mx.eval(run(graph, xb, params, on_input, on_output))
    ops = {op.name: op.op for op in graph.ops}
    tensors = []
    for name in plan.own:
        lo, hi = observers[name].range()
        scale, zp = qparams(lo, hi, settings.act_type)
        tensors.append(TensorQuant(name, ops.get(name, "input"), lo, hi, scale, zp))
    if progress is not None:
        progress(1.0, f"calibrated {len(tensors)} tensors")
    return IntCalibration(settings, graph, plan, tuple(tensors), int(images.shape[0]))


class FullIntModel:
    """Calls like the model, computing what the deployed full-integer graph computes (float32 fake-quant)."""

    def __init__(self, cal: IntCalibration, only: str | None = None, weights: bool = True):
        """``only`` quantizes one tensor (or, as 'weights:OP', one op's weights) and nothing else."""
        self.cal = cal
        self.graph = cal.graph
        self.act_type = cal.settings.act_type
        table = cal.table()
        same = dict(cal.plan.same)
        alias = dict(cal.plan.alias)
        self.points: dict[str, TensorQuant] = {}
        for name in cal.plan.own:
            if only is None or only == name:
                self.points[name] = table[name]
        for name, src in same.items():
            if only is None or only == name:
                self.points[name] = table[src]
        params = {}
        for op in self.graph.ops:
            p = {k: mx.array(v) for k, v in op.params.items()}
            quantize_w = weights and (only is None or only == f"weights:{op.name}")
            src = alias.get(op.inputs[0], op.inputs[0]) if op.inputs else ""
            src = same.get(src, src)
            if op.op in WEIGHT_OPS and quantize_w:
                w, w_scales = quantize_weight(op.params["weight"])
                p["weight"] = mx.array(w)
                if "bias" in op.params and src in table:
                    p["bias"] = mx.array(quantize_bias(op.params["bias"], table[src].scale, w_scales))
            elif op.op == "bn" and quantize_w and src in table:  # ORT's QDQ BatchNormalization
                gamma, g_scale = quantize_per_tensor(op.params["gamma"])
                p["gamma"] = mx.array(gamma)
                g_scales = np.full(gamma.shape, g_scale, np.float32)
                p["beta"] = mx.array(quantize_bias(op.params["beta"], table[src].scale, g_scales))
            params[op.name] = p
        self.params = params

    def _on_input(self, x: mx.array) -> mx.array:
        t = self.points.get(self.graph.input)
        return x if t is None else fake_quant(x, t.scale, t.zero_point, self.act_type)

    def _on_output(self, op: Op, y: mx.array) -> mx.array:
        t = self.points.get(op.name)
        return y if t is None else fake_quant(y, t.scale, t.zero_point, self.act_type)

    def __call__(self, x: mx.array) -> mx.array:
        return run(self.graph, x, self.params, self._on_input, self._on_output)

    def tensors(self, x: mx.array) -> dict[str, mx.array]:
        """Every op's output (after its fake-quant) on ``x``."""
        values = {}

        def keep(op, y):
            y = self._on_output(op, y)
            values[op.name] = y
            return y

        values[self.graph.input] = self._on_input(x)
        run(self.graph, x, self.params, self._on_input, keep)
        return values


def float_model(cal: IntCalibration) -> Callable[[mx.array], mx.array]:
    """The folded float graph (no quantization at all): the reference of every error."""
    params = mx_params(cal.graph)
    return lambda x: run(cal.graph, x, params)


def logits(fn: Callable[[mx.array], mx.array], x: np.ndarray, batch_size: int = 32, should_stop=None) -> np.ndarray:
    out = []
    for xb in _batches(x, batch_size, should_stop):
        y = fn(xb)
        mx.eval(y)
        out.append(np.array(y, dtype=np.float32))
    return np.concatenate(out)


@dataclass(frozen=True)
class LayerError:
    """What quantizing one tensor (or one op's weights) costs.

    ``isolated_logit_error``: mean |logit - float logit| with only this quantized.
    ``sqnr_db``: the tensor's signal-to-noise ratio in the full simulation (errors accumulated so far).
    """

    tensor: str
    kind: str  # activation | weights
    op: str
    scale: float
    zero_point: int
    lo: float
    hi: float
    isolated_logit_error: float
    sqnr_db: float


def layer_errors(
    cal: IntCalibration,
    images: np.ndarray,
    batch_size: int = 32,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[LayerError, ...]:
    """Per-tensor error report, worst first."""
    ref = logits(float_model(cal), images, batch_size, should_stop)
    table = cal.table()
    same = dict(cal.plan.same)
    ops = {op.name: op for op in cal.graph.ops}
    sqnr = _sqnr(cal, images, batch_size, should_stop)
    targets = [(n, "activation") for n in cal.plan.own] + [(n, "activation") for n in same]
    targets += [(op.name, "weights") for op in cal.graph.ops if op.op in (*WEIGHT_OPS, "bn")]
    rows = []
    for k, (name, kind) in enumerate(targets):
        if progress is not None:
            progress(k / len(targets), f"{kind} of {name}")
        if kind == "weights":
            sim = FullIntModel(cal, only=f"weights:{name}")
            t = None
        else:
            sim = FullIntModel(cal, only=name, weights=False)
            t = table[same.get(name, name)]
        err = float(np.mean(np.abs(logits(sim, images, batch_size, should_stop) - ref)))
        op = ops[name].op if name in ops else "input"
        if t is None:
            rows.append(LayerError(name, kind, op, float("nan"), 0, float("nan"), float("nan"), err, float("nan")))
        else:
            rows.append(LayerError(name, kind, op, t.scale, t.zero_point, t.lo, t.hi, err, sqnr.get(name, np.nan)))
    rows.sort(key=lambda r: -r.isolated_logit_error)
    return tuple(rows)


def _sqnr(cal: IntCalibration, images: np.ndarray, batch_size: int, should_stop) -> dict[str, float]:
    sim = FullIntModel(cal)
    plain = FullIntModel(cal, only="", weights=False)
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    for xb in _batches(images, batch_size, should_stop):
        a, b = plain.tensors(xb), sim.tensors(xb)
        for name in a:
            d = a[name] - b[name]
            signal[name] = signal.get(name, 0.0) + float(mx.sum(a[name] * a[name]).item())
            noise[name] = noise.get(name, 0.0) + float(mx.sum(d * d).item())
    return {n: float(10 * np.log10(max(signal[n], 1e-30) / max(noise[n], 1e-30))) for n in signal}


LAYER_CSV_HEADER = [
    "rank",
    "tensor",
    "kind",
    "op",
    "scale",
    "zero_point",
    "lo",
    "hi",
    "isolated_logit_error",
    "sqnr_db",
]


def layer_rows(rows: tuple[LayerError, ...]) -> list[list]:
    return [
        [i + 1, r.tensor, r.kind, r.op, r.scale, r.zero_point, r.lo, r.hi, r.isolated_logit_error, r.sqnr_db]
        for i, r in enumerate(rows)
    ]
