"""The long row contract ``variant,metric,class,value`` and how to read it back.

Every metric leaves the engine as (variant, metric, class, value) rows: the ``evaluate``
CSV, the results store and the GUI's evaluation views all use them, so a view can be
rebuilt from a stored run as well as from a fresh one.

Conventions:
- ``class`` is empty for overall metrics and names the class for per-class metrics.
- confusion cells: metric ``confusion``, class ``"<true> -> <predicted>"``.
- reliability bins: metrics ``reliability_{lower,upper,count,confidence,accuracy}``,
  class ``"<uniform|adaptive>:<bin index, 2 digits>"`` (non-empty bins only).
- bootstrap intervals: ``<metric>_ci_low`` / ``<metric>_ci_high``.
- agreement with the reference model: ``flip_rate``, ``top1_agreement``, ``mean_kl``
  (per class: ``flip_rate`` among that class's images) and ``delta_<metric>`` = this
  variant minus the reference.
- a metric measured under a condition carries it after ``@``: ``accuracy@gaussian_noise:3``
  (a corruption at a severity) or ``f1@operating_point`` (after thresholds chosen on
  validation data); ``threshold`` rows hold those thresholds per class.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

Row = tuple[str, str, str, float]
CONDITION_SEP = "@"
CONFUSION_SEP = " -> "
OPERATING_POINT = "operating_point"


def with_condition(metric: str, condition: str | None) -> str:
    return metric if not condition else f"{metric}{CONDITION_SEP}{condition}"


def split_condition(metric: str) -> tuple[str, str | None]:
    """'accuracy@gaussian_noise:3' -> ('accuracy', 'gaussian_noise:3')."""
    base, sep, cond = metric.partition(CONDITION_SEP)
    return base, (cond if sep else None)


def corruption_of(condition: str | None) -> tuple[str, int] | None:
    """'gaussian_noise:3' -> ('gaussian_noise', 3); None for other conditions."""
    if not condition or ":" not in condition:
        return None
    name, _, sev = condition.rpartition(":")
    return (name, int(sev)) if sev.isdigit() else None


class RowTable:
    """Rows of one variant indexed for lookup; the inverse of the engine's ``long_rows``."""

    def __init__(self, variant: str, rows: Iterable[Row]):
        self.variant = variant
        self.values: dict[tuple[str, str], float] = {}
        self._order: dict[str, list[str]] = {}
        for v, metric, cls, value in rows:
            if v != variant:
                continue
            self.values[(metric, cls)] = float(value) if value is not None else math.nan
            self._order.setdefault(metric, []).append(cls)

    @classmethod
    def from_record(cls, variant: str, metrics: dict[str, float], per_class: Iterable[tuple[str, str, float]]):
        rows = [(variant, k, "", v) for k, v in metrics.items()]
        rows += [(variant, m, c, v) for m, c, v in per_class]
        return cls(variant, rows)

    def get(self, metric: str, cls: str = "", default: float = math.nan) -> float:
        return self.values.get((metric, cls), default)

    def has(self, metric: str) -> bool:
        return metric in self._order

    def metrics(self) -> list[str]:
        return list(self._order)

    def classes(self) -> list[str]:
        """Class names in their stored order (from the per-class support rows)."""
        return [c for c in self._order.get("support", []) if c]

    def per_class(self, metric: str) -> dict[str, float]:
        return {c: self.values[(metric, c)] for c in self._order.get(metric, []) if c}

    def overall(self, condition: str | None = None) -> dict[str, float]:
        out = {}
        for metric, classes in self._order.items():
            base, cond = split_condition(metric)
            if cond == condition and "" in classes:
                out[base] = self.values[(metric, "")]
        return out

    def confusion(self, condition: str | None = None) -> np.ndarray | None:
        """The (true, predicted) count matrix in class order, or None when not stored."""
        metric = with_condition("confusion", condition)
        classes = self.classes()
        if metric not in self._order or not classes:
            return None
        index = {c: i for i, c in enumerate(classes)}
        cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
        for key in self._order[metric]:
            t, _, p = key.partition(CONFUSION_SEP)
            if t in index and p in index:
                cm[index[t], index[p]] = int(round(self.values[(metric, key)]))
        return cm

    def reliability(self, strategy: str = "uniform") -> dict[str, np.ndarray]:
        """Non-empty bins: arrays lower, upper, count, confidence, accuracy (may be empty)."""
        keys = [k for k in self._order.get("reliability_count", []) if k.startswith(f"{strategy}:")]
        out = {}
        for field in ("lower", "upper", "count", "confidence", "accuracy"):
            out[field] = np.asarray([self.get(f"reliability_{field}", k) for k in keys], dtype=np.float64)
        return out

    def conditions(self) -> list[str]:
        seen = []
        for metric in self._order:
            _, cond = split_condition(metric)
            if cond and cond not in seen:
                seen.append(cond)
        return seen

    def robustness(self, metric: str = "accuracy", cls: str = "") -> dict[str, dict[int, float]]:
        """{corruption: {severity: value}}, severity 0 holding the clean value."""
        out: dict[str, dict[int, float]] = {}
        clean = self.get(metric, cls)
        for cond in self.conditions():
            parsed = corruption_of(cond)
            if parsed is None:
                continue
            name, sev = parsed
            value = self.get(with_condition(metric, cond), cls)
            series = out.setdefault(name, {0: clean})
            series[sev] = value
        return {k: dict(sorted(v.items())) for k, v in out.items()}


def split_rows(rows: Iterable[Row]) -> tuple[dict[str, float], tuple[tuple[str, str, float], ...]]:
    """(overall metrics, per-class (metric, class, value)) as a RunRecord stores them."""
    rows = list(rows)
    overall = {metric: float(value) for _, metric, cls, value in rows if cls == ""}
    per_class = tuple((metric, cls, float(value)) for _, metric, cls, value in rows if cls != "")
    return overall, per_class


def evaluation_record(bundle, dataset: str, rows: Iterable[Row], settings: dict):
    """A RunRecord of kind 'evaluate' holding ``rows`` (overall in metrics, the rest per class).

    ``RowTable.from_record`` reads it back.
    """
    from engine.measure.environment import environment
    from engine.measure.results import RunRecord

    metrics, per_class = split_rows(rows)
    return RunRecord(
        kind="evaluate",
        model_name=bundle.name,
        model_path=str(bundle.path),
        model_hash=bundle.content_hash(),
        recipe=bundle.recipe_name,
        dataset=dataset,
        metrics=metrics,
        per_class=per_class,
        settings=settings,
        environment=environment(),
    )


def variants_in(rows: Iterable[Row]) -> list[str]:
    seen: list[str] = []
    for v, *_ in rows:
        if v not in seen:
            seen.append(v)
    return seen
