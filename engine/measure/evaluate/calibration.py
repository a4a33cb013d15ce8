"""Calibration: does the top-1 confidence mean what it says?

ECE bins the top-1 confidence, compares each bin's accuracy with its mean confidence and
weights the gaps by bin size (Guo et al., 2017). Uniform bins split [0, 1] evenly;
adaptive bins hold equal numbers of images (edges at confidence percentiles). The bin
assignment is scikit-learn's ``calibration_curve`` (uniform / quantile strategies), so
the reliability diagram's points match it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("uniform", "adaptive")
DEFAULT_BINS = 15


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin data of a reliability diagram; empty bins have count 0 and NaN means."""

    strategy: str
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    count: tuple[int, ...]
    confidence: tuple[float, ...]
    accuracy: tuple[float, ...]

    @property
    def ece(self) -> float:
        n = sum(self.count)
        if n == 0:
            return math.nan
        return float(
            sum(c / n * abs(a - p) for c, a, p in zip(self.count, self.accuracy, self.confidence, strict=True) if c)
        )

    @property
    def mce(self) -> float:
        gaps = [abs(a - p) for c, a, p in zip(self.count, self.accuracy, self.confidence, strict=True) if c]
        return float(max(gaps)) if gaps else math.nan


def bin_edges(confidence: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "adaptive":
        return np.percentile(confidence, np.linspace(0, 1, n_bins + 1) * 100)
    raise ValueError(f"unknown binning strategy '{strategy}' (use {', '.join(STRATEGIES)})")


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_BINS, strategy: str = "uniform"
) -> ReliabilityBins:
    """Bin top-1 confidences; a value on an inner edge falls in the lower bin."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = bin_edges(confidence, n_bins, strategy) if len(confidence) else np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], confidence)
    count = np.bincount(ids, minlength=n_bins)
    conf_sum = np.bincount(ids, weights=confidence, minlength=n_bins)
    hit_sum = np.bincount(ids, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, hit_sum / np.maximum(count, 1), np.nan)
    return ReliabilityBins(
        strategy=strategy,
        lower=tuple(float(e) for e in edges[:-1]),
        upper=tuple(float(e) for e in edges[1:]),
        count=tuple(int(c) for c in count),
        confidence=tuple(float(c) for c in mean_conf),
        accuracy=tuple(float(a) for a in acc),
    )


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean -log p(true class), probabilities clipped at float64 eps (scikit-learn's log_loss)."""
    if len(y_true) == 0:
        return math.nan
    eps = np.finfo(np.float64).eps
    p = np.clip(probs[np.arange(len(y_true)), np.asarray(y_true)], eps, 1.0)
    return float(-np.log(p).mean())


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean over images of the squared distance between the probabilities and the one-hot truth."""
    if len(y_true) == 0:
        return math.nan
    onehot = np.zeros_like(probs, dtype=np.float64)
    onehot[np.arange(len(y_true)), np.asarray(y_true)] = 1.0
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


@dataclass(frozen=True)
class CalibrationReport:
    ece_uniform: float
    ece_adaptive: float
    mce_uniform: float
    nll: float
    brier: float
    mean_confidence: float
    uniform: ReliabilityBins
    adaptive: ReliabilityBins

    def overall(self) -> dict[str, float]:
        return {
            "ece_uniform": self.ece_uniform,
            "ece_adaptive": self.ece_adaptive,
            "mce_uniform": self.mce_uniform,
            "nll": self.nll,
            "brier": self.brier,
            "mean_confidence": self.mean_confidence,
        }


def calibration_report(y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS) -> CalibrationReport:
    """ECE (uniform and adaptive bins), MCE, NLL, Brier and reliability-diagram bins."""
    y_true = np.asarray(y_true)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = probs.argmax(axis=1) == y_true if len(probs) else np.zeros(0, dtype=bool)
    uniform = reliability_bins(confidence, correct, n_bins, "uniform")
    adaptive = reliability_bins(confidence, correct, n_bins, "adaptive")
    return CalibrationReport(
        ece_uniform=uniform.ece,
        ece_adaptive=adaptive.ece,
        mce_uniform=uniform.mce,
        nll=negative_log_likelihood(y_true, probs),
        brier=brier_score(y_true, probs),
        mean_confidence=float(confidence.mean()) if len(confidence) else math.nan,
        uniform=uniform,
        adaptive=adaptive,
    )
