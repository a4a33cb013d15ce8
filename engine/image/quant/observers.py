"""Activation range observers computed as ONNX Runtime's static-quantization calibrators compute them.

``onnxruntime.quantization.calibrate`` (1.2x-1.3x) turns the float values a tensor took on the
calibration images into one (min, max) range:

- ``minmax``: the smallest and largest value (MinMaxCalibrater, no moving average);
- ``percentile``: a 2048-bin histogram of |x| over [min |x|, max |x|]; the threshold is the left
  edge of the bin where the CDF reaches p = 99.999 %, used as (-t, t) and clipped to the real
  (min, max) (PercentileCalibrater, ``symmetric=True`` as ``create_calibrator`` defaults);
- ``entropy``: a histogram of x over (-max|x|, max|x|); the symmetric window of bins whose
  KL divergence to its 128-level quantization is smallest (EntropyCalibrater, TensorRT's method).
  With ORT's defaults (128 bins, 128 quantized bins) only the full window is a candidate, so it
  equals minmax; more bins make it clip;
- ``mse``: not an ORT calibrator: the clipping range whose quantize/dequantize error over a
  histogram is smallest (the app's own, kept for comparison).

ORT histograms all calibration values at once. Here values arrive batch by batch, so histogram
observers take two passes: the first finds the range, the second fills the fixed bins, which
gives the same bins as ORT's single ``np.histogram`` call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.core.errors import UserError

OBSERVERS = ("minmax", "percentile", "entropy", "mse")
ORT_OBSERVERS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class ObserverSettings:
    """How tensor ranges are chosen.

    Attributes:
        name: minmax, percentile, entropy or mse.
        percentile: for ``percentile`` (ORT's default 99.999).
        num_bins: histogram bins (ORT: 2048 for percentile, 128 for entropy; 0 = that default).
        num_quantized_bins: entropy's quantized levels (ORT's default 128).
    """

    name: str = "minmax"
    percentile: float = 99.999
    num_bins: int = 0
    num_quantized_bins: int = 128

    def validate(self) -> None:
        if self.name not in OBSERVERS:
            raise UserError(f"unknown observer '{self.name}' (use one of {', '.join(OBSERVERS)})")
        if not 50.0 < self.percentile <= 100.0:
            raise UserError(f"percentile must lie in (50, 100], not {self.percentile}")
        if self.num_bins < 0 or (self.name == "entropy" and 0 < self.num_bins < self.num_quantized_bins):
            raise UserError(f"histogram bins must be at least {self.num_quantized_bins}, not {self.num_bins}")

    @property
    def bins(self) -> int:
        return self.num_bins or {"percentile": 2048, "entropy": 128, "mse": 2048}.get(self.name, 0)

    @property
    def needs_histogram(self) -> bool:
        return self.name != "minmax"

    def label(self) -> str:
        return f"percentile {self.percentile:g}" if self.name == "percentile" else self.name


class TensorObserver:
    """Collects one tensor's values: ``see_range`` on pass 1, ``see_histogram`` on pass 2, then ``range()``."""

    def __init__(self, settings: ObserverSettings):
        self.s = settings
        self.lo = np.float32(np.inf)
        self.hi = np.float32(-np.inf)
        self.abs_lo = np.float32(np.inf)
        self.hist: np.ndarray | None = None
        self.edges: np.ndarray | None = None

    def see_range(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32)
        self.lo = min(self.lo, np.nanmin(x))
        self.hi = max(self.hi, np.nanmax(x))
        if self.s.name == "percentile":
            self.abs_lo = min(self.abs_lo, np.nanmin(np.abs(x)))

    def _bins(self) -> tuple[float, float]:
        if self.s.name == "percentile":
            return float(self.abs_lo), float(max(abs(self.lo), abs(self.hi)))
        t = np.float32(max(abs(self.lo), abs(self.hi)))
        return float(-t), float(t)

    def see_histogram(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).ravel()
        if self.s.name == "percentile":
            x = np.abs(x)
        lo, hi = self._bins()
        h, edges = np.histogram(x, bins=self.s.bins, range=(lo, hi))
        self.hist = h if self.hist is None else self.hist + h
        self.edges = edges

    def range(self) -> tuple[float, float]:
        """The calibrated (min, max), before zero is added to it."""
        if not np.isfinite(self.lo):
            raise UserError("a tensor was never observed: no calibration image reached it")
        if self.s.name == "minmax" or self.hist is None:
            return float(self.lo), float(self.hi)
        if self.s.name == "percentile":
            return _percentile_range(self.hist, self.edges.astype(np.float32), self.s.percentile, self.lo, self.hi)
        if self.s.name == "entropy":
            return _entropy_range(self.hist, self.edges, self.s.num_quantized_bins, self.lo, self.hi)
        return _mse_range(self.hist, self.edges, self.lo, self.hi)


def _percentile_range(hist, edges, percentile, lo, hi) -> tuple[float, float]:
    cdf = np.cumsum(hist / hist.sum())
    t = edges[np.searchsorted(cdf, percentile / 100.0)]
    return float(max(-t, lo)), float(min(t, hi))


def _smooth(p: np.ndarray, eps: float = 0.0001) -> np.ndarray | None:
    zeros = (p == 0).astype(np.float32)
    n_zeros = zeros.sum()
    n_nonzeros = p.size - n_zeros
    if not n_nonzeros:
        return None
    eps1 = eps * float(n_zeros) / float(n_nonzeros)
    return p.astype(np.float32) + eps * zeros + (-eps1) * (1.0 - zeros)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = p.astype(np.float32) / p.sum()
    q = q.astype(np.float32) / q.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = p * np.log(p / q)
    terms[(p == 0) & (q >= 0)] = 0
    terms[~((p > 0) & (q > 0))] = np.inf
    return float(np.float32(terms.sum()))


def _entropy_range(hist, edges, n_quant, lo, hi) -> tuple[float, float]:
    """TensorRT/ORT KL threshold search over symmetric windows around the zero bin."""
    n = hist.size
    zero_bin, half = n // 2, n_quant // 2
    best, best_kl = (edges[0], edges[-1]), np.inf
    for i in range(half, zero_bin + 1):
        start, end = zero_bin - i, min(zero_bin + i + 1, n)
        sliced = hist[start:end].copy()
        p = sliced.copy()
        p[0] += hist[:start].sum()
        p[-1] += hist[end:].sum()
        nonzero = (p != 0).astype(np.int64)
        merged = sliced.size // n_quant
        quantized = np.array([sliced[k * merged : (k + 1) * merged].sum() for k in range(n_quant)], dtype=np.int64)
        quantized[-1] += sliced[n_quant * merged :].sum()
        q = np.zeros(p.size, dtype=np.int64)
        for k in range(n_quant):
            norm = nonzero[k * merged : (k + 1) * merged].sum()
            if norm:
                q[k * merged : (k + 1) * merged] = quantized[k] / norm
        ps, qs = _smooth(p), _smooth(q)
        kl = np.inf if ps is None or qs is None else _kl(ps, qs)
        if kl < best_kl:  # argmin keeps the first of equal values, as ORT's np.argmin
            best, best_kl = (edges[start], edges[end]), kl
    return float(max(best[0], lo)), float(min(best[1], hi))


def _mse_range(hist, edges, lo, hi, bits: int = 8, steps: int = 40) -> tuple[float, float]:
    from engine.image.quant.intsim_math import fake_quant_np, qparams

    centers = 0.5 * (edges[:-1] + edges[1:])
    keep = hist > 0
    centers, counts = centers[keep].astype(np.float64), hist[keep].astype(np.float64)
    fractions = np.linspace(1.0, 0.05, steps)
    best, best_err = (float(lo), float(hi)), np.inf
    for a in fractions if lo < 0 else [1.0]:
        for b in fractions if hi > 0 else [1.0]:
            scale, zp = qparams(lo * a, hi * b, "uint8")
            err = float(np.sum(counts * (fake_quant_np(centers, scale, zp, "uint8") - centers) ** 2))
            if err < best_err:
                best, best_err = (float(lo * a), float(hi * b)), err
    return best
