"""Headless Pareto plot (PNG): accuracy against a cost, frontier drawn, bubble area = memory."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from engine.measure.compare import pareto_front
from engine.measure.report.plots import _pyplot, _save


def bubble_areas(memory: Sequence[float], smallest: float = 40.0, largest: float = 400.0) -> list[float]:
    """Marker areas proportional to memory, scaled into [smallest, largest] (points^2)."""
    finite = [m for m in memory if m is not None and math.isfinite(m) and m > 0]
    top = max(finite, default=0.0)
    if top <= 0:
        return [smallest] * len(memory)
    return [smallest + (largest - smallest) * (m / top) if m and m > 0 else smallest for m in memory]


def pareto_png(
    labels: Sequence[str],
    xs: Sequence[float],
    ys: Sequence[float],
    memory: Sequence[float],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> Path:
    """Scatter of (x, y) per variant; the frontier (smaller x, larger y) joined and outlined."""
    plt = _pyplot()
    front = pareto_front(xs, ys)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    areas = bubble_areas(memory)
    on = set(front)
    for i, (label, x, y) in enumerate(zip(labels, xs, ys, strict=True)):
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            continue
        ax.scatter(
            [x],
            [y],
            s=areas[i],
            alpha=0.75,
            color="#d62728" if i in on else "#1f77b4",
            edgecolors="black" if i in on else "none",
        )
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=8)
    if front:
        ax.plot(
            [xs[i] for i in front], [ys[i] for i in front], "--", color="#d62728", linewidth=1, label="Pareto frontier"
        )
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel} against {xlabel} (bubble area = peak memory)", fontsize=10)
    ax.grid(alpha=0.3)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
