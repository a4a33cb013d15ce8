"""Quantize a model layer by layer with a calibrated method (sequentially, as GPTQ does).

Same plan, folding and config as ``engine.image.quant.apply.quantize_model``; only the codes
differ. Layers go in execution order, each one's statistics taken on the model whose
earlier layers are already quantized, so later layers compensate earlier errors. Each
layer first gets its RTN module (structure and layout exactly as RTN would store it),
whose weight, scales and biases are then replaced by the method's: a bundle made by any
method loads and runs like an RTN one.

Falls back to RTN, and says so in the report, for layers a method does not cover: the
float-scaled formats (mxfp4, mxfp8, nvfp4) and grouped (non-depthwise) convolutions.

The method may also be chosen per layer ({layer path: method}, as autoquant's (format,
method) search does): the same one pass, RTN layers rounded to nearest in their turn, and
the config's ``method`` entry maps each quantized layer to its method under ``layers``.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.quant.apply import _cast_float_params, quant_config, quantizable_layers, quantize_layer
from engine.image.quant.fold import fold_batchnorm, folded_pairs
from engine.image.quant.formats import LayerSpec
from engine.image.quant.hooks import replace_modules
from engine.image.quant.layers import conv_matrix, depthwise_matrix
from engine.image.quant.methods.adaround import DEFAULT_ITERS, DEFAULT_LAMBDA, adaround_matrix
from engine.image.quant.methods.affine import triple
from engine.image.quant.methods.bias_correction import corrected_bias
from engine.image.quant.methods.capture import LayerStats, layer_stats, output_means
from engine.image.quant.methods.gptq import (
    DEFAULT_DAMP,
    gptq_depthwise,
    gptq_matrix,
    prepare_depthwise_hessians,
    prepare_hessian,
    rtn_matrix,
)
from engine.image.quant.methods.names import DEFAULT_CALIB_SIZE, DEFAULT_METHOD, METHODS  # noqa: F401
from engine.image.quant.recipes import Recipe
from engine.image.quant.sizing import matrix_shape, padded_dims


@dataclass(frozen=True)
class MethodSettings:
    """Settings of the calibrated methods (all have defaults)."""

    damp: float = DEFAULT_DAMP  # GPTQ dampening, fraction of the mean Hessian diagonal
    act_order: bool = False  # GPTQ columns by decreasing Hessian diagonal (static groups)
    # Group ranges chosen to minimise the Hessian-weighted error instead of min/max. Measured on the
    # bench's MobileNetV2: AdaRound int3/g64 68.0 % -> 84.7 % with it; GPTQ+BC a little worse with it
    # (int3/g64 96.4 % -> 94.6 %: its error feedback already absorbs what a clip would save).
    gptq_clip_search: bool = False
    adaround_clip_search: bool = True
    adaround_iters: int = DEFAULT_ITERS
    adaround_lambda: float = DEFAULT_LAMBDA
    adaround_lr: float = 3e-2
    batch_size: int = 32  # calibration images per forward pass

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class MethodReport:
    """What a calibrated quantization did and what it cost."""

    method: str
    calib_name: str
    calib_size: int
    seconds: float
    peak_memory_bytes: int  # MLX's peak allocation during the run + the process's peak RSS growth
    rtn_layers: tuple[str, ...] = ()  # layers the method does not cover, rounded to nearest
    bias_added: tuple[str, ...] = ()  # layers that got a bias from bias correction
    settings: dict = field(default_factory=dict)
    # Per-layer methods (autoquant's choice): {layer path: method} for every quantized layer; empty
    # when one method was applied to the whole model. ``method`` is then PER_LAYER.
    layer_methods: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {
            "name": self.method,
            "calibration": self.calib_name,
            "calibration_size": self.calib_size,
            "seconds": self.seconds,
            "peak_memory_bytes": self.peak_memory_bytes,
            "rtn_layers": list(self.rtn_layers),
            "bias_added": list(self.bias_added),
            "settings": self.settings,
        }
        if self.layer_methods:
            out["layers"] = dict(self.layer_methods)
        return out


PER_LAYER = "per-layer"  # the report's and config's method name when each layer has its own


def check_method(method: str) -> str:
    if method not in METHODS:
        raise UserError(f"unknown quantization method '{method}' (use one of {', '.join(METHODS)})")
    return method


def _rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def memory_estimate(model: nn.Module, calib_x: np.ndarray) -> int:
    """Bytes a calibrated run needs beyond the model: the images, and float64 Hessians (and copies) of the largest layer."""
    largest = 0
    for info in quantizable_layers(model):
        rows, cols = matrix_shape(info.kind, info.shape)
        per = cols * rows * rows if info.kind == "depthwise" else cols * cols  # (channels, taps, taps)
        largest = max(largest, per)
    return int(calib_x.nbytes + 6 * 8 * largest)


def _layer_matrix(module: nn.Module, kind: str) -> np.ndarray:
    if kind == "linear":
        return np.array(module.weight, dtype=np.float32)
    if kind == "depthwise":
        return np.array(depthwise_matrix(module.weight), dtype=np.float32)
    return np.array(conv_matrix(module.weight), dtype=np.float32)


def _padded(w: np.ndarray, h: np.ndarray, kind: str, cols_p: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero columns (and zero Hessian entries: unreached inputs) up to the stored width."""
    extra = cols_p - w.shape[1]
    if extra <= 0:
        return w, h
    w = np.pad(w, [(0, 0), (0, extra)])
    if kind == "depthwise":
        return w, np.pad(h, [(0, extra), (0, 0), (0, 0)])
    return w, np.pad(h, [(0, extra), (0, extra)])


def _covered(module: nn.Module, kind: str, entry: dict) -> bool:
    return entry.get("mode") == "affine" and (kind != "conv" or getattr(module, "groups", 1) == 1)


def quantize_with_method(
    model: nn.Module,
    recipe: Recipe,
    method: str | Mapping[str, str],
    calib_x: np.ndarray | None,
    calib_name: str = "calibration",
    settings: MethodSettings | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> tuple[dict, MethodReport]:
    """Quantize ``model`` in place with ``recipe``'s formats and ``method``'s codes.

    Args:
        model: a float model (parameters evaluated, eval mode).
        recipe: the storage plan (which format each layer gets).
        method: one of METHODS other than 'rtn' for the whole model, or a per-layer choice
            {layer path: method} (layers not in it are rounded to nearest). Per-layer RTN layers
            are rounded in the same sequential pass, so later calibrated layers see them quantized.
        calib_x: preprocessed NHWC calibration images (labels are never needed); may be None
            only when no layer has a calibrated method.
        calib_name: the calibration set's name, for the config and the report.
        settings: the methods' settings (defaults: MethodSettings()).
        progress: called with (fraction, message) per layer.
        should_stop: polled between layers and inside long steps; a true answer raises Cancelled.
        input_shape: (H, W, C) of one input, for the execution order and BatchNorm folding.

    Returns:
        (the quantization config, as ``quantize_model``'s plus a ``method`` entry, which for a
        per-layer choice maps each quantized layer to its method under ``layers``; the report).

    Raises:
        UserError: unknown method or no calibration images.
        Cancelled: should_stop() turned true.
    """
    per_layer = not isinstance(method, str)
    if per_layer:
        choice = {path: check_method(m) for path, m in method.items()}
        calibrated = sorted({m for m in choice.values() if m != "rtn"})
        name = PER_LAYER
    else:
        check_method(method)
        if method == "rtn":
            raise UserError("method 'rtn' needs no calibration: use quantize_model")
        choice, calibrated, name = {}, [method], method
    if calibrated and (calib_x is None or len(calib_x) == 0):
        raise UserError(f"method '{calibrated[0]}' needs calibration images; none were given")

    def method_of(path: str) -> str:
        return choice.get(path, "rtn") if per_layer else method

    settings = settings or MethodSettings()
    stop = should_stop or (lambda: False)
    t0 = time.perf_counter()
    rss0 = _rss_bytes()
    mx.reset_peak_memory()
    calib_x = np.asarray(calib_x if calib_x is not None else np.zeros((0,)), dtype=np.float32)

    folded = folded_pairs(model)
    layers = quantizable_layers(model, input_shape)
    plan = recipe.plan(layers)
    if recipe.fold_bn and input_shape is not None and any(s.quantized for s in plan.values()):
        folded += fold_batchnorm(model, input_shape)
        layers = quantizable_layers(model, input_shape)
        plan = recipe.plan(layers)
    modules = dict(model.named_modules())
    corrected = [i.path for i in layers if plan[i.path].quantized and method_of(i.path).endswith("+bc")]
    float_means = output_means(model, corrected, calib_x, settings.batch_size, stop) if corrected else {}

    entries: dict[str, dict] = {}
    float_layers: dict[str, str] = {}
    rtn_layers, bias_added = [], []
    chosen: dict[str, str] = {}
    for i, info in enumerate(layers):
        if stop():
            raise Cancelled()
        spec = plan[info.path]
        module = modules[info.path]
        if not spec.quantized:
            entry = {"type": info.kind, **spec.to_dict()}
            if spec.dtype != recipe.float_dtype:
                float_layers[info.path] = spec.dtype
            entries[info.path] = entry
            continue
        new, entry = quantize_layer(module, info.kind, spec, recipe.scale_dtype, recipe.adapt_layout)
        if "mode" not in entry:
            float_layers[info.path] = entry["dtype"]
            entries[info.path] = entry
            continue
        layer_method = method_of(info.path)
        if layer_method == "rtn":
            pass  # chosen, not a fallback: rounded to nearest in this same pass
        elif _covered(module, info.kind, entry):
            stats = layer_stats(model, info.path, info.kind, calib_x, settings.batch_size, stop)
            added = set_method_codes(module, new, info.path, info.kind, entry, layer_method, stats, settings,
                                     recipe.scale_dtype, float_means.get(info.path), stop)  # fmt: skip
            if added:
                entry["bias"] = True
                bias_added.append(info.path)
        else:
            rtn_layers.append(info.path)
            layer_method = "rtn"
        chosen[info.path] = layer_method
        mx.eval(new.parameters())
        replace_modules(model, {info.path: new})
        entries[info.path] = entry
        if progress is not None:
            progress((i + 1) / len(layers), f"{info.path}: {LayerSpec.from_dict(entry).label()} ({layer_method})")
    _cast_float_params(model, recipe.float_dtype, float_layers)
    mx.eval(model.parameters())
    report = MethodReport(
        name,
        calib_name,
        int(len(calib_x)),
        time.perf_counter() - t0,
        int(mx.get_peak_memory() + max(0, _rss_bytes() - rss0)),
        tuple(rtn_layers),
        tuple(bias_added),
        settings.to_dict(),
        chosen if per_layer else {},
    )
    return quant_config(recipe, folded, entries, method=report.to_dict()), report


def set_method_codes(
    module: nn.Module,
    new: nn.Module,
    path: str,
    kind: str,
    entry: dict,
    method: str,
    stats: LayerStats,
    settings: MethodSettings,
    scale_dtype: str,
    float_mean: np.ndarray | None,
    stop: Callable[[], bool],
    cache: dict | None = None,
) -> bool:
    """Replace ``new``'s RTN codes (``module`` quantized as ``entry``) by ``method``'s, in place.

    ``stats`` are the layer's input statistics (``layer_stats``), ``float_mean`` the float
    model's mean output of the layer (bias correction; None: no correction). ``cache``: a dict
    kept across calls for the same layer and the same ``stats`` (several formats), where GPTQ
    keeps its Hessian work.
    Returns True when bias correction added a bias the layer did not have.
    """
    gs, bits = entry["group_size"], entry["bits"]
    w = _layer_matrix(module, kind)
    rows, cols = w.shape
    _, cols_p = padded_dims(rows, cols, gs, "affine")
    w_p, h_p = _padded(w, stats.hessian, kind, cols_p)
    if method.startswith("gptq"):
        cache = {} if cache is None else cache
        key = ("gptq", cols_p)
        if kind == "depthwise":
            if key not in cache:
                cache[key] = prepare_depthwise_hessians(h_p, settings.damp)
            qm = gptq_depthwise(w_p, h_p, gs, bits, scale_dtype, settings.damp, stop, settings.gptq_clip_search,
                                cache[key])  # fmt: skip
        else:
            if key not in cache:
                cache[key] = prepare_hessian(h_p, settings.damp, settings.act_order)
            qm = gptq_matrix(w_p, h_p, gs, bits, scale_dtype, settings.damp, settings.act_order, should_stop=stop,
                             clip_search=settings.gptq_clip_search, prepared=cache[key])  # fmt: skip
    elif method.startswith("adaround"):
        qm = adaround_matrix(w_p, h_p, gs, bits, scale_dtype, settings.adaround_iters, settings.adaround_lambda,
                             settings.adaround_lr, stop, settings.adaround_clip_search)  # fmt: skip
    else:
        qm = rtn_matrix(w_p, gs, bits, scale_dtype)
    wq, scales, biases = triple(qm.codes, qm.scales, qm.biases, bits)
    for name, arr in (("weight", wq), ("scales", scales), ("biases", biases)):
        if new[name].shape != arr.shape:
            raise RuntimeError(f"{path}: {method} produced {name} {arr.shape}, the layer stores {new[name].shape}")
    new.weight, new.scales, new.biases = wq, scales, biases
    if float_mean is None:
        return False
    had_bias = "bias" in new
    bias = np.array(new["bias"], dtype=np.float32) if had_bias else None
    new.bias = mx.array(corrected_bias(kind, qm.weight[:, :cols], bias, stats.mean, float_mean))
    return not had_bias
