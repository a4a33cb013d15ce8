"""Full-integer simulation: static per-tensor int8 activations, fake-quantized in MLX.

A TFLite or Core ML full-integer model stores every tensor between fused ops
in int8 with one (scale, zero point) per tensor, fixed from calibration data.
With BatchNorm folded and activations fused, those tensors are the inputs of
the weight layers (convolutions, depthwise convolutions, Linear) and the
model's output. This module fake-quantizes exactly those points
(``quantize(x) -> dequantize`` in float32), optionally also every weight
layer's output, so the accuracy of a deployed full-integer model can be seen
before exporting.

Ranges come from N calibration images through one of three observers:
- ``minmax``: the smallest and largest value seen;
- ``percentile``: the p-th and (100-p)-th percentiles of a histogram (p = 99.99);
- ``mse``: the clipping range whose quantize/dequantize error over the histogram
  is smallest (a grid over both ends, each bin's centre quantized for real).
Ranges always include zero and the zero point is an integer, as in TFLite,
so zero padding stays exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.quant.apply import layer_kind
from engine.image.quant.calibration import LabelledImages
from engine.image.quant.hooks import hooked
from engine.image.quant.layers import QUANTIZED_TYPES

OBSERVERS = ("minmax", "percentile", "mse")
HIST_BINS = 2048


@dataclass(frozen=True)
class ActSimSettings:
    """How activations are simulated.

    Attributes:
        bits: activation bits (8 for TFLite / Core ML full-integer).
        observer: minmax, percentile or mse.
        calib: number of calibration images.
        percentile: for the percentile observer.
        outputs: also quantize every weight layer's output, not only the inputs.
        seed: which calibration images are drawn.
    """

    bits: int = 8
    observer: str = "minmax"
    calib: int = 128
    percentile: float = 99.99
    outputs: bool = False
    seed: int = 0

    def validate(self) -> None:
        if self.observer not in OBSERVERS:
            raise UserError(f"unknown observer '{self.observer}' (use one of {', '.join(OBSERVERS)})")
        if not 2 <= self.bits <= 16:
            raise UserError(f"activation bits must lie in 2..16, not {self.bits}")
        if self.calib < 1:
            raise UserError(f"calibration needs at least one image, not {self.calib}")
        if not 50.0 < self.percentile <= 100.0:
            raise UserError(f"percentile must lie in (50, 100], not {self.percentile}")

    def label(self) -> str:
        obs = f"percentile {self.percentile:g}" if self.observer == "percentile" else self.observer
        return f"int{self.bits} activations simulated ({obs}, {self.calib} calibration images)"


@dataclass(frozen=True)
class TensorQuant:
    """The static quantization of one tensor: ``point`` is 'layer:in' or 'layer:out'."""

    point: str
    lo: float
    hi: float
    scale: float
    zero_point: int


@dataclass(frozen=True)
class ActCalibration:
    settings: ActSimSettings
    tensors: tuple[TensorQuant, ...]
    n_images: int


def compute_layers(model: nn.Module) -> list[str]:
    """Paths of the weight layers (float or quantized), in definition order."""
    out = []
    for path, m in reversed(model.named_modules()):
        if path and (layer_kind(m) is not None or isinstance(m, QUANTIZED_TYPES)):
            out.append(path)
    return out


def sim_points(model: nn.Module, outputs: bool) -> list[tuple[str, str]]:
    """(layer, 'in'|'out') points to quantize: every weight layer's input and the last one's output."""
    layers = compute_layers(model)
    points = [(p, "in") for p in layers]
    points += [(p, "out") for p in (layers if outputs else layers[-1:])]
    return points


def qparams(lo: float, hi: float, bits: int) -> tuple[float, int]:
    """(scale, zero point) of an asymmetric signed range that contains zero."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    scale = (hi - lo) / (qmax - qmin)
    if scale <= 0:
        return 1.0, 0
    zp = int(np.clip(np.round(qmin - lo / scale), qmin, qmax))
    return float(scale), zp


def fake_quant_np(x: np.ndarray, scale: float, zp: int, bits: int) -> np.ndarray:
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return (np.clip(np.round(x / scale) + zp, qmin, qmax) - zp) * scale


def fake_quant(x: mx.array, scale: float, zp: int, bits: int) -> mx.array:
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = mx.clip(mx.round(x / scale) + zp, qmin, qmax)
    return ((q - zp) * scale).astype(x.dtype)


class _Histogram:
    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = min(lo, 0.0), max(hi, 0.0)
        if self.hi <= self.lo:
            self.hi = self.lo + 1e-6
        self.counts = np.zeros(HIST_BINS, dtype=np.float64)

    def add(self, values: np.ndarray) -> None:
        c, _ = np.histogram(values, bins=HIST_BINS, range=(self.lo, self.hi))
        self.counts += c

    @property
    def centers(self) -> np.ndarray:
        edges = np.linspace(self.lo, self.hi, HIST_BINS + 1)
        return 0.5 * (edges[:-1] + edges[1:])

    def percentile_range(self, p: float) -> tuple[float, float]:
        cdf = np.cumsum(self.counts) / max(1.0, self.counts.sum())
        edges = np.linspace(self.lo, self.hi, HIST_BINS + 1)
        lo = edges[int(np.searchsorted(cdf, (100.0 - p) / 100.0))]
        hi = edges[min(HIST_BINS, int(np.searchsorted(cdf, p / 100.0)) + 1)]
        return float(lo), float(hi)

    def mse_range(self, bits: int, steps: int = 40) -> tuple[float, float]:
        centers, counts = self.centers, self.counts
        keep = counts > 0
        centers, counts = centers[keep], counts[keep]
        fractions = np.linspace(1.0, 0.05, steps)
        best, best_err = (self.lo, self.hi), np.inf
        for a in fractions if self.lo < 0 else [1.0]:
            for b in fractions if self.hi > 0 else [1.0]:
                lo, hi = self.lo * a, self.hi * b
                scale, zp = qparams(lo, hi, bits)
                err = float(np.sum(counts * (fake_quant_np(centers, scale, zp, bits) - centers) ** 2))
                if err < best_err:
                    best, best_err = (lo, hi), err
        return best


def _observe(model, points, x: np.ndarray, batch_size, visit, should_stop) -> None:
    """Run ``model`` over ``x`` with ``visit(point, numpy values)`` called at every point."""
    by_layer: dict[str, set[str]] = {}
    for path, where in points:
        by_layer.setdefault(path, set()).add(where)

    def hook(path, forward, inp, *args, **kwargs):
        if "in" in by_layer[path]:
            visit(f"{path}:in", inp)
        out = forward(inp, *args, **kwargs)
        if "out" in by_layer[path]:
            visit(f"{path}:out", out)
        return out

    with hooked(model, {p: hook for p in by_layer}):
        for start in range(0, x.shape[0], batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled()
            mx.eval(model(mx.array(x[start : start + batch_size])))


def calibrate(
    model: nn.Module,
    images: LabelledImages,
    settings: ActSimSettings,
    batch_size: int = 64,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ActCalibration:
    """Observe activations on ``settings.calib`` images drawn from ``images`` and fix every tensor's range.

    Raises:
        UserError: bad settings; Cancelled: should_stop() turned true.
    """
    settings.validate()
    sample = images.subset(settings.calib, settings.seed)
    points = sim_points(model, settings.outputs)
    lo = {f"{p}:{w}": np.inf for p, w in points}
    hi = {f"{p}:{w}": -np.inf for p, w in points}

    def minmax(point, arr):
        lo[point] = min(lo[point], float(mx.min(arr).item()))
        hi[point] = max(hi[point], float(mx.max(arr).item()))

    if progress is not None:
        progress(0.0, f"observing ranges on {len(sample)} images")
    _observe(model, points, sample.x, batch_size, minmax, should_stop)
    ranges = {k: (lo[k], hi[k]) for k in lo}
    if settings.observer != "minmax":
        hists = {k: _Histogram(*ranges[k]) for k in ranges}

        def histogram(point, arr):
            hists[point].add(np.array(arr, dtype=np.float32).ravel())

        if progress is not None:
            progress(0.5, f"{settings.observer} observer: histograms")
        _observe(model, points, sample.x, batch_size, histogram, should_stop)
        for k, h in hists.items():
            ranges[k] = (
                h.percentile_range(settings.percentile)
                if settings.observer == "percentile"
                else h.mse_range(settings.bits)
            )
    tensors = []
    for k, (a, b) in ranges.items():
        scale, zp = qparams(a, b, settings.bits)
        tensors.append(TensorQuant(k, float(min(a, 0.0)), float(max(b, 0.0)), scale, zp))
    if progress is not None:
        progress(1.0, f"calibrated {len(tensors)} tensors")
    return ActCalibration(settings, tuple(tensors), len(sample))


@contextlib.contextmanager
def simulated_activations(model: nn.Module, calibration: ActCalibration) -> Iterator[None]:
    """Within the block, ``model`` fake-quantizes its activations as calibrated."""
    bits = calibration.settings.bits
    table = {t.point: t for t in calibration.tensors}
    layers = sorted({p.rsplit(":", 1)[0] for p in table})

    def hook(path, forward, inp, *args, **kwargs):
        t = table.get(f"{path}:in")
        if t is not None:
            inp = fake_quant(inp, t.scale, t.zero_point, bits)
        out = forward(inp, *args, **kwargs)
        t = table.get(f"{path}:out")
        if t is not None:
            out = fake_quant(out, t.scale, t.zero_point, bits)
        return out

    with hooked(model, {p: hook for p in layers}):
        yield


@dataclass(frozen=True)
class SimRow:
    """One simulated evaluation; ``weight_only_*`` are the same model without activation simulation."""

    observer: str
    calib: int
    draw: int
    accuracy: float
    weight_only_accuracy: float
    kl_vs_weight_only: float
    flip_rate_vs_weight_only: float


def calibration_sweep(
    model: nn.Module,
    calibration_images: LabelledImages,
    eval_images: LabelledImages,
    observers: tuple[str, ...] = OBSERVERS,
    sizes: tuple[int, ...] = (1, 8, 64, 256),
    draws: int = 1,
    base: ActSimSettings | None = None,
    batch_size: int = 64,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_row: Callable[[SimRow], None] | None = None,
) -> tuple[SimRow, ...]:
    """Accuracy with simulated activations for each observer, calibration-set size and random draw."""
    from dataclasses import replace

    from engine.image.quant.calibration import OutputChange, logits_of

    base = base or ActSimSettings()
    weight_only = logits_of(model, eval_images.x, batch_size, should_stop)
    w_acc = OutputChange.between(weight_only, weight_only, eval_images.y).accuracy
    rows = []
    total = len(observers) * len(sizes) * draws
    for observer in observers:
        for n in sizes:
            for draw in range(draws):
                settings = replace(base, observer=observer, calib=n, seed=draw)
                cal = calibrate(model, calibration_images, settings, batch_size, should_stop=should_stop)
                with simulated_activations(model, cal):
                    logits = logits_of(model, eval_images.x, batch_size, should_stop)
                change = OutputChange.between(weight_only, logits, eval_images.y)
                row = SimRow(observer, cal.n_images, draw, change.accuracy, w_acc, change.kl, change.flip_rate)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                if progress is not None:
                    progress(len(rows) / total, f"{observer}, {cal.n_images} images: {100 * change.accuracy:.2f}%")
    return tuple(rows)
