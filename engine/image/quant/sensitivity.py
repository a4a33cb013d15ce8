"""Per-layer sensitivity: quantize one layer at a time and measure how far the outputs move.

For every quantizable layer and every candidate format, only that layer is
quantized (the rest stay float) and the model runs over calibration images;
the change against the float model's outputs is the mean KL divergence of the
softmax outputs and the top-1 flip rate (plus the accuracy, as labels are
known). BatchNorm is folded first when the recipe will fold it, so the layers
measured are the layers that will be stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

from engine.core.errors import Cancelled
from engine.core.fileio import write_csv
from engine.image.quant.apply import LayerInfo, quantize_layer
from engine.image.quant.calibration import LabelledImages, OutputChange, logits_of
from engine.image.quant.formats import LayerSpec, float_spec
from engine.image.quant.hooks import replace_modules
from engine.image.quant.inventory import other_weights, prepare_float_model
from engine.image.quant.sizing import layer_bytes


@dataclass(frozen=True)
class LayerSensitivity:
    """The output change when one layer alone is stored in ``format``."""

    path: str
    kind: str
    params: int
    format: str
    bytes: int
    float_bytes: int
    kl: float
    flip_rate: float
    accuracy: float | None
    method: str = "rtn"  # how the layer's codes were chosen (``engine.image.quant.methods``)


@dataclass(frozen=True)
class SensitivityReport:
    model: str
    dataset: str
    n_images: int
    formats: tuple[str, ...]
    float_accuracy: float | None
    layers: tuple[LayerInfo, ...]
    other_bytes: int  # float32 bytes of everything that is not a quantizable weight (norms, ...)
    other_params: int
    rows: tuple[LayerSensitivity, ...]
    folded: tuple[tuple[str, str], ...]
    seconds: float
    methods: tuple[str, ...] = ("rtn",)  # every (layer, format) has one row per method

    def row(self, path: str, fmt: str, method: str = "rtn") -> LayerSensitivity:
        for r in self.rows:
            if r.path == path and r.format == fmt and r.method == method:
                return r
        raise KeyError((path, fmt, method))

    def for_format(self, fmt: str, method: str = "rtn") -> list[LayerSensitivity]:
        return [r for r in self.rows if r.format == fmt and r.method == method]


CSV_HEADER = [
    "layer",
    "kind",
    "params",
    "format",
    "bytes",
    "float_bytes",
    "kl_divergence",
    "top1_flip_rate",
    "accuracy",
    "accuracy_drop_points",
]


def write_sensitivity_csv(path: str | Path, report: SensitivityReport) -> Path:
    """One row per (layer, format[, method]): raw values, accuracy drop in percentage points against float.

    A report over more methods than RTN gets a last column, ``method``.
    """

    def drop(r):
        if r.accuracy is None or report.float_accuracy is None:
            return None
        return 100.0 * (report.float_accuracy - r.accuracy)

    extra = report.methods != ("rtn",)
    rows = (
        [r.path, r.kind, r.params, r.format, r.bytes, r.float_bytes, r.kl, r.flip_rate, r.accuracy, drop(r)]
        + ([r.method] if extra else [])
        for r in report.rows
    )
    return write_csv(path, CSV_HEADER + (["method"] if extra else []), rows)


def swapped_change(model, path: str, original, new, ref, images, batch_size: int, should_stop):
    """How the model's answers change (vs ``ref``) with ``new`` in place of the layer at ``path`` (put back after)."""
    mx.eval(new.parameters())
    replace_modules(model, {path: new})
    try:
        out = logits_of(model, images.x, batch_size, should_stop)
    finally:
        replace_modules(model, {path: original})
    return OutputChange.between(ref, out, images.y)


def sensitivity_row(info, spec, nbytes: int, float_bytes: int, change, method: str = "rtn") -> LayerSensitivity:
    """One report row: layer ``info`` stored as ``spec`` (by ``method``), and what that alone changes."""
    return LayerSensitivity(
        path=info.path,
        kind=info.kind,
        params=info.params,
        format=spec.name(),
        bytes=nbytes,
        float_bytes=float_bytes,
        kl=change.kl,
        flip_rate=change.flip_rate,
        accuracy=change.accuracy,
        method=method,
    )


def analyze_sensitivity(
    bundle,
    specs: list[LayerSpec],
    images: LabelledImages,
    fold_bn: bool = True,
    scale_dtype: str = "float16",
    batch_size: int = 128,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_row: Callable[[LayerSensitivity], None] | None = None,
) -> SensitivityReport:
    """Quantize each layer alone in each of ``specs`` and compare with the float model.

    Args:
        bundle: a float ModelBundle (not modified).
        specs: the candidate formats.
        images: calibration images (labels used for accuracy).
        fold_bn: fold BatchNorm first, as the default recipes do.
        scale_dtype: storage dtype of affine scales (for the byte counts).
        on_row: called with each finished row (live charts).

    Raises:
        UserError: the model is quantized; Cancelled: should_stop() turned true.
    """
    t0 = time.perf_counter()
    work, layers, folded = prepare_float_model(bundle, fold_bn)
    model = work.model
    ref = logits_of(model, images.x, batch_size, should_stop)
    float_acc = OutputChange.between(ref, ref, images.y).accuracy
    modules = dict(model.named_modules())
    total = max(1, len(layers) * len(specs))
    rows = []
    for li, info in enumerate(layers):
        original = modules[info.path]
        float_bytes = layer_bytes(info.kind, info.shape, float_spec("float32"), info.has_bias)
        for si, spec in enumerate(specs):
            if should_stop is not None and should_stop():
                raise Cancelled()
            new, _ = quantize_layer(original, info.kind, spec, scale_dtype)
            nbytes = layer_bytes(info.kind, info.shape, spec, info.has_bias, scale_dtype)
            change = swapped_change(model, info.path, original, new, ref, images, batch_size, should_stop)
            row = sensitivity_row(info, spec, nbytes, float_bytes, change)
            rows.append(row)
            if on_row is not None:
                on_row(row)
            if progress is not None:
                done = li * len(specs) + si + 1
                progress(
                    done / total, f"{info.path} {spec.name()}: KL {change.kl:.4f}, flips {100 * change.flip_rate:.1f}%"
                )
    return finished_report(bundle, images, specs, float_acc, model, layers, rows, folded, t0)


def finished_report(
    bundle, images, specs, float_acc, model, layers, rows, folded, t0: float, methods: tuple[str, ...] = ("rtn",)
) -> SensitivityReport:
    """The report of a finished analysis (exact or Fisher): rows plus the weights no row covers."""
    other_bytes, other_params = other_weights(model, layers)
    return SensitivityReport(
        model=bundle.name,
        dataset=images.name,
        n_images=len(images),
        formats=tuple(s.name() for s in specs),
        float_accuracy=float_acc,
        layers=tuple(layers),
        other_bytes=other_bytes,
        other_params=other_params,
        rows=tuple(rows),
        folded=tuple(tuple(p) for p in folded),
        seconds=time.perf_counter() - t0,
        methods=tuple(methods),
    )
