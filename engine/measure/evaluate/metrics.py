"""Every metric of one variant on one dataset, and its rows in the long CSV contract."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from engine.measure.evaluate.calibration import DEFAULT_BINS, CalibrationReport, calibration_report
from engine.measure.evaluate.classification import ClassificationReport, _safe_div, classification_report
from engine.measure.evaluate.ranking import roc_auc_ovr, top_k_accuracy
from engine.measure.evaluate.rows import CONFUSION_SEP, Row, with_condition

DEFAULT_TOP_K = (3, 5)


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval of one metric (class '' for overall)."""

    metric: str
    cls: str
    low: float
    high: float


@dataclass(frozen=True)
class VariantMetrics:
    """Classification, ranking and calibration metrics, plus optional bootstrap intervals."""

    report: ClassificationReport
    specificity: tuple[float, ...]
    roc_auc: tuple[float, ...]
    roc_auc_macro: float
    top_k: tuple[tuple[int, float], ...]
    calibration: CalibrationReport
    intervals: tuple[Interval, ...] = ()
    bootstrap_resamples: int = 0

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.report.class_names

    def overall(self) -> dict[str, float]:
        out = dict(self.report.overall())
        out["roc_auc_macro"] = self.roc_auc_macro
        out.update({f"top_{k}_accuracy": v for k, v in self.top_k})
        out.update(self.calibration.overall())
        return out

    def per_class(self) -> dict[str, tuple[float, ...]]:
        r = self.report
        return {
            "precision": r.precision,
            "recall": r.recall,
            "f1": r.f1,
            "support": tuple(float(s) for s in r.support),
            "specificity": self.specificity,
            "roc_auc": self.roc_auc,
        }

    def scalars(self) -> dict[tuple[str, str], float]:
        """(metric, class) -> value for the overall and per-class metrics (no bins, no cells)."""
        out = {(m, ""): v for m, v in self.overall().items()}
        for metric, values in self.per_class().items():
            out.update({(metric, c): v for c, v in zip(self.class_names, values, strict=True)})
        return out

    def long_rows(
        self,
        variant: str,
        condition: str | None = None,
        confusion: bool = True,
        reliability: bool = True,
    ) -> list[Row]:
        """Rows in the ``variant,metric,class,value`` contract (see engine.measure.evaluate.rows)."""

        def m(name: str) -> str:
            return with_condition(name, condition)

        rows: list[Row] = [(variant, m(k), "", float(v)) for k, v in self.overall().items()]
        per_class = self.per_class()
        for i, cname in enumerate(self.class_names):
            rows += [(variant, m(metric), cname, float(values[i])) for metric, values in per_class.items()]
        if confusion:
            names = self.class_names
            for t, row in enumerate(self.report.confusion):
                rows += [
                    (variant, m("confusion"), f"{names[t]}{CONFUSION_SEP}{names[p]}", float(v))
                    for p, v in enumerate(row)
                ]
        if reliability:
            for bins in (self.calibration.uniform, self.calibration.adaptive):
                for i, count in enumerate(bins.count):
                    if not count:
                        continue
                    key = f"{bins.strategy}:{i:02d}"
                    rows += [
                        (variant, m("reliability_lower"), key, bins.lower[i]),
                        (variant, m("reliability_upper"), key, bins.upper[i]),
                        (variant, m("reliability_count"), key, float(count)),
                        (variant, m("reliability_confidence"), key, bins.confidence[i]),
                        (variant, m("reliability_accuracy"), key, bins.accuracy[i]),
                    ]
        if self.intervals:
            rows.append((variant, m("bootstrap_resamples"), "", float(self.bootstrap_resamples)))
            for iv in self.intervals:
                rows.append((variant, m(f"{iv.metric}_ci_low"), iv.cls, iv.low))
                rows.append((variant, m(f"{iv.metric}_ci_high"), iv.cls, iv.high))
        return rows


def specificity(confusion: np.ndarray) -> np.ndarray:
    """Per class TN / (TN + FP), 0 where a class has no negatives."""
    cm = np.asarray(confusion, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = total - tp - fp - fn
    return _safe_div(tn, tn + fp)


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    y_pred: np.ndarray | None = None,
    top_k: tuple[int, ...] = DEFAULT_TOP_K,
    n_bins: int = DEFAULT_BINS,
) -> VariantMetrics:
    """All metrics of one set of predictions.

    Args:
        y_true: (N,) true class indices into ``class_names``.
        probs: (N, K) predicted probabilities (rows sum to 1).
        y_pred: predictions to score instead of ``argmax(probs)`` (an operating point);
            ranking and calibration metrics still read ``probs``.
        top_k: k values for top-k accuracy; those not below K are left out.
        n_bins: bins of the reliability diagram / ECE.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if y_pred is None:
        y_pred = probs.argmax(axis=1)
    report = classification_report(y_true, y_pred, list(class_names))
    auc, auc_macro = roc_auc_ovr(y_true, probs)
    k_values = tuple(k for k in top_k if 1 < k < len(class_names))
    return VariantMetrics(
        report=report,
        specificity=tuple(float(s) for s in specificity(np.asarray(report.confusion))),
        roc_auc=auc,
        roc_auc_macro=auc_macro,
        top_k=tuple((k, top_k_accuracy(y_true, probs, k)) for k in k_values),
        calibration=calibration_report(y_true, probs, n_bins),
    )


# Metrics that get bootstrap intervals: overall ones, and these per class.
BOOTSTRAP_PER_CLASS = ("precision", "recall", "f1", "specificity", "roc_auc")
_NEEDS_SUPPORT = {"recall", "f1", "roc_auc"}


def bootstrap_intervals(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    n_resamples: int,
    seed: int = 0,
    level: float = 0.95,
    y_pred: np.ndarray | None = None,
    top_k: tuple[int, ...] = DEFAULT_TOP_K,
    n_bins: int = DEFAULT_BINS,
    should_stop=None,
) -> tuple[Interval, ...]:
    """Percentile bootstrap intervals: resample images with replacement ``n_resamples`` times.

    A class absent from a resample gives no recall/F1/AUC for it there (NaN, ignored),
    rather than a zero that would drag its interval down.

    Raises:
        Cancelled: should_stop() turned true between resamples.
    """
    from engine.core.errors import Cancelled

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred)
    n = len(y_true)
    rng = np.random.default_rng(seed)
    keys: list[tuple[str, str]] | None = None
    samples = []
    for _ in range(n_resamples):
        if should_stop is not None and should_stop():
            raise Cancelled()
        idx = rng.integers(0, n, n)
        vm = compute_metrics(y_true[idx], probs[idx], class_names, y_pred[idx], top_k, n_bins)
        values = vm.scalars()
        support = dict(zip(class_names, vm.report.support, strict=True))
        for (metric, cls), _ in list(values.items()):
            if cls and metric in _NEEDS_SUPPORT and support[cls] == 0:
                values[(metric, cls)] = math.nan
        if keys is None:
            keys = [k for k in values if k[1] == "" and k[0] != "n" or (k[1] and k[0] in BOOTSTRAP_PER_CLASS)]
        samples.append([values[k] for k in keys])
    if not samples or keys is None:
        return ()
    arr = np.asarray(samples, dtype=np.float64)
    tail = (1.0 - level) / 2.0 * 100.0
    out = []
    for j, (metric, cls) in enumerate(keys):
        col = arr[:, j]
        col = col[~np.isnan(col)]
        if len(col) == 0:
            low = high = math.nan
        else:
            low, high = (float(v) for v in np.percentile(col, [tail, 100.0 - tail]))
        out.append(Interval(metric, cls, low, high))
    return tuple(out)


def with_intervals(metrics: VariantMetrics, intervals: tuple[Interval, ...], resamples: int) -> VariantMetrics:
    return replace(metrics, intervals=intervals, bootstrap_resamples=resamples)


def evaluation_rows(variant: str, labels: Iterable[str], result) -> list[Row]:
    """Every metric of the evaluation suite for one ``evaluate_bundle`` result, plus its throughput.

    AUC, calibration, confusion cells and reliability bins included, so the Evaluation
    tab can open any run stored from these rows (an evaluate run or a sweep's variant).
    """
    rows = compute_metrics(result.y_true, result.probs, list(labels)).long_rows(variant)
    rows += [
        (variant, "images_per_s", "", float(result.images_per_s)),
        (variant, "skipped", "", float(len(result.skipped))),
    ]
    return rows
