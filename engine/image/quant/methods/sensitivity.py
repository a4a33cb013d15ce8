"""Per-layer sensitivity per (format, method): each layer alone, its codes chosen by each method.

``engine.image.quant.sensitivity.analyze_sensitivity`` rounds to nearest; here every
(layer, format) is also measured with the calibrated methods. Only the one layer is
quantized, so its inputs are the float model's: a GPTQ-family method's Hessian (and the
input mean of bias correction) comes from the float model's inputs to that layer on the
calibration images (``capture.layer_stats``, once per layer whatever the formats), bias
correction's target from the float model's output means (``capture.output_means``, one pass
for all layers). Then the model runs over the calibration images as in the RTN analysis,
and the row's KL is that of the float model against the model with that one layer stored in
that format by that method.

Cost: the RTN analysis's forwards times the number of methods, plus one partial forward per
layer for its statistics and each method's own work per (layer, format). A (format, method)
that a method does not cover (float formats, mxfp/nvfp, grouped convolutions) is what RTN
gives, and reuses RTN's row instead of being measured again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from engine.core.errors import Cancelled
from engine.image.quant.apply import quantize_layer
from engine.image.quant.calibration import LabelledImages, OutputChange, logits_of
from engine.image.quant.formats import LayerSpec, float_spec
from engine.image.quant.inventory import prepare_float_model
from engine.image.quant.methods.capture import layer_stats, output_means
from engine.image.quant.methods.names import METHODS
from engine.image.quant.methods.run import MethodSettings, _covered, check_method, set_method_codes
from engine.image.quant.sensitivity import (
    LayerSensitivity,
    SensitivityReport,
    finished_report,
    sensitivity_row,
    swapped_change,
)
from engine.image.quant.sizing import layer_bytes


def ordered_methods(methods) -> tuple[str, ...]:
    """``methods`` checked, without repeats, in METHODS' order (RTN first: ties go to it)."""
    given = {check_method(m) for m in methods}
    return tuple(m for m in METHODS if m in given)


def analyze_sensitivity_methods(
    bundle,
    specs: list[LayerSpec],
    methods: tuple[str, ...],
    images: LabelledImages,
    fold_bn: bool = True,
    scale_dtype: str = "float16",
    batch_size: int = 128,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_row: Callable[[LayerSensitivity], None] | None = None,
    settings: MethodSettings | None = None,
) -> SensitivityReport:
    """``analyze_sensitivity`` with one row per (layer, format, method).

    Args:
        methods: names of METHODS (RTN included or not); the report lists them in METHODS' order.
        images: calibration images: the KL is measured on them and the methods calibrate on them.
        settings: the methods' settings (defaults: MethodSettings()).
        Others as ``analyze_sensitivity``'s.

    Raises:
        UserError: the model is quantized, or an unknown method; Cancelled: should_stop() turned true.
    """
    t0 = time.perf_counter()
    methods = ordered_methods(methods)
    settings = settings or MethodSettings()
    stop = should_stop or (lambda: False)
    work, layers, folded = prepare_float_model(bundle, fold_bn)
    model = work.model
    x = np.asarray(images.x, dtype=np.float32)
    ref = logits_of(model, x, batch_size, should_stop)
    float_acc = OutputChange.between(ref, ref, images.y).accuracy
    modules = dict(model.named_modules())
    paths = [i.path for i in layers]
    corrects = any(m.endswith("+bc") for m in methods)
    float_means = output_means(model, paths, x, settings.batch_size, stop) if corrects else {}
    total = max(1, len(layers) * len(specs) * len(methods))
    rows, done = [], 0
    for info in layers:
        original = modules[info.path]
        float_bytes = layer_bytes(info.kind, info.shape, float_spec("float32"), info.has_bias)
        stats = None  # the float model's inputs to this layer, taken once when a method first needs them
        cache: dict = {}  # and what GPTQ derives from them, shared by the formats
        for spec in specs:
            nbytes = layer_bytes(info.kind, info.shape, spec, info.has_bias, scale_dtype)
            rtn_row = None
            for method in methods:
                if stop():
                    raise Cancelled()
                new, entry = quantize_layer(original, info.kind, spec, scale_dtype)
                calibrated = method != "rtn" and spec.quantized and "mode" in entry
                if calibrated and _covered(original, info.kind, entry):
                    if stats is None:
                        stats = layer_stats(model, info.path, info.kind, x, settings.batch_size, stop)
                    mean = float_means.get(info.path) if method.endswith("+bc") else None
                    set_method_codes(original, new, info.path, info.kind, entry, method, stats, settings,
                                     scale_dtype, mean, stop, cache)  # fmt: skip
                elif method != "rtn" and rtn_row is not None:
                    row = replace(rtn_row, method=method)  # the method leaves this format to RTN
                    rows.append(row)
                    done += 1
                    if on_row is not None:
                        on_row(row)
                    continue
                change = swapped_change(model, info.path, original, new, ref, images, batch_size, should_stop)
                row = sensitivity_row(info, spec, nbytes, float_bytes, change, method)
                if method == "rtn":
                    rtn_row = row
                rows.append(row)
                done += 1
                if on_row is not None:
                    on_row(row)
                if progress is not None:
                    progress(done / total, f"{info.path} {spec.name()} {method}: KL {change.kl:.4f}")
    return finished_report(bundle, images, specs, float_acc, model, layers, rows, folded, t0, methods)
