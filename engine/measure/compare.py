"""Comparing variants: Pareto frontiers and side-by-side metric deltas (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.core.metrics import direction


def _finite(v) -> bool:
    if v is None or isinstance(v, (str, bytes)):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def pareto_front(
    xs: Sequence[float],
    ys: Sequence[float],
    minimize_x: bool = True,
    maximize_y: bool = True,
) -> list[int]:
    """Indices of the non-dominated points, ordered by x from best to worst.

    A point dominates another when it is at least as good on both axes and
    strictly better on one. Equal points do not dominate each other, so
    duplicates on the frontier are all kept. Points with a missing or
    non-finite coordinate are never on the frontier.

    Args:
        xs, ys: coordinates, e.g. latency and accuracy.
        minimize_x: smaller x is better (latency, size); else larger is.
        maximize_y: larger y is better (accuracy); else smaller is.

    Returns:
        Indices into ``xs``/``ys``.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} vs {len(ys)})")
    sx = 1.0 if minimize_x else -1.0
    sy = -1.0 if maximize_y else 1.0
    # Both axes turned into "smaller is better".
    pts = sorted(
        (sx * float(x), sy * float(y), i)
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
        if _finite(x) and _finite(y)
    )
    front: list[int] = []
    best_y = math.inf
    prev: tuple[float, float] | None = None
    for x, y, i in pts:
        if y < best_y:
            front.append(i)
            best_y = y
            prev = (x, y)
        elif prev is not None and (x, y) == prev:
            front.append(i)  # an exact duplicate of a frontier point
    return front


@dataclass(frozen=True)
class MetricDelta:
    """One metric of two runs side by side."""

    metric: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        """b - a, when both are finite."""
        return self.b - self.a if _finite(self.a) and _finite(self.b) else None

    @property
    def ratio(self) -> float | None:
        """b / a, when both are finite and a is not zero."""
        if _finite(self.a) and _finite(self.b) and self.a != 0:
            return self.b / self.a
        return None


def metric_deltas(a: dict[str, float], b: dict[str, float]) -> tuple[MetricDelta, ...]:
    """Every metric of either run (a's order first, then b's extra ones), with b - a and b / a."""
    names = list(a) + [k for k in b if k not in a]
    return tuple(MetricDelta(k, _clean(a.get(k)), _clean(b.get(k))) for k in names)


def _clean(v) -> float | None:
    return float(v) if _finite(v) else None


def differing_keys(a: dict, b: dict) -> list[str]:
    """Keys whose values differ between two flat dicts (settings, environment)."""
    return [k for k in list(a) + [k for k in b if k not in a] if a.get(k) != b.get(k)]


def metric_direction(metric: str) -> int:
    """+1 when larger is better, -1 when smaller is better, 0 when neither (engine.core.metrics)."""
    return direction(metric)


@dataclass(frozen=True)
class VariantPoint:
    """A model's latest accuracy and cost figures gathered from its stored runs."""

    label: str
    recipe: str
    model_hash: str
    run_ids: tuple[int, ...]
    metrics: dict


def variant_points(records, batch_size: int | None = 1) -> list[VariantPoint]:
    """Merge runs of the same model (content hash) into one point each, newest value per metric.

    Sweep runs carry accuracy and latency together; an evaluation and a
    benchmark of the same model, from any session, are joined by its hash.
    Records are taken in id order, so a later run's value wins.

    Args:
        records: RunRecords.
        batch_size: only benchmarks at this batch size count (None: any), so
            latencies of different batch sizes are never mixed.
    """
    groups: dict[str, list] = {}
    for r in sorted(records, key=lambda r: r.id or 0):
        b = r.metrics.get("batch_size")
        if batch_size is not None and b is not None and _finite(b) and int(b) != batch_size:
            continue
        key = r.model_hash or f"run-{r.id}"
        groups.setdefault(key, []).append(r)
    points = []
    for key, runs in groups.items():
        metrics: dict = {}
        for r in runs:
            metrics.update({k: v for k, v in r.metrics.items() if _finite(v)})
        last = runs[-1]
        ids = tuple(r.id for r in runs if r.id is not None)
        points.append(VariantPoint(last.variant, last.recipe or "", key, ids, metrics))
    return points
