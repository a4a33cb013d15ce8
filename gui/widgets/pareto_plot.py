"""Pareto plot: one bubble per variant (area = peak memory), the frontier highlighted, names on hover."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal

from engine.core.units import human_bytes
from engine.measure.compare import pareto_front
from gui.theme import plot_colors

FRONT_COLOR = "#d62728"
OTHER_COLOR = "#1f77b4"


@dataclass(frozen=True)
class ParetoPoint:
    """A variant on the plot; ``key`` identifies it to the owner (a run id, a path)."""

    label: str
    x: float | None
    y: float | None
    memory: float | None = None
    key: object = None


def accuracy_points(items, x_key: str, scale: float = 1.0) -> list[ParetoPoint]:
    """ParetoPoints with accuracy in % on y and ``metrics[x_key] * scale`` on x.

    Args:
        items: (label, metrics dict, key) triples; bubble size comes from ``peak_memory_bytes``.
    """
    points = []
    for label, metrics, key in items:
        acc, x = metrics.get("accuracy"), metrics.get(x_key)
        points.append(
            ParetoPoint(
                label,
                None if x is None else x * scale,
                None if acc is None else 100.0 * acc,
                metrics.get("peak_memory_bytes"),
                key,
            )
        )
    return points


def bubble_sizes(memory: Sequence[float | None], smallest: float = 9.0, largest: float = 38.0) -> np.ndarray:
    """Marker diameters (px) whose areas are proportional to memory, the largest at ``largest``."""
    mem = np.array([m if m is not None and math.isfinite(m) and m > 0 else 0.0 for m in memory], dtype=float)
    top = mem.max(initial=0.0)
    if top <= 0:
        return np.full(len(mem), smallest)
    return np.maximum(smallest, largest * np.sqrt(mem / top))


class ParetoPlot(pg.PlotWidget):
    """Accuracy (y, higher is better) against a cost (x, lower is better).

    ``hovered`` carries the hovered variant's description ('' when the cursor
    leaves every bubble); the same text is the plot's tool tip.
    """

    hovered = Signal(str)

    def __init__(
        self,
        title: str,
        xlabel: str,
        ylabel: str = "accuracy (%)",
        x_format: Callable[[float], str] | None = None,
        parent=None,
    ):
        super().__init__(parent=parent)
        self.setBackground("w")
        self.setTitle(title, color=plot_colors().foreground)
        self.setLabel("left", ylabel)
        self.setLabel("bottom", xlabel)
        self.showGrid(x=True, y=True, alpha=0.3)
        self.xlabel, self.ylabel = xlabel, ylabel
        self.x_format = x_format or (lambda v: f"{v:.4g}")
        self.points: list[ParetoPoint] = []
        self.front: list[int] = []
        self._labels: list[pg.TextItem] = []
        self.frontier_line = pg.PlotDataItem(
            [], [], pen=pg.mkPen(FRONT_COLOR, width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine)
        )
        self.scatter = pg.ScatterPlotItem(
            hoverable=True,
            hoverPen=pg.mkPen("#000", width=2),
            tip=self._tip,
            pxMode=True,
        )
        self.getPlotItem().vb.setDefaultPadding(0.12)  # room for the names beside the bubbles
        self.addItem(self.frontier_line)
        self.addItem(self.scatter)
        self.scatter.sigHovered.connect(self._on_hover)
        self.getPlotItem().addLegend(offset=(-10, -10))
        self.getPlotItem().legend.addItem(self.frontier_line, "Pareto frontier")

    # -- data ---------------------------------------------------------------------------
    def set_points(self, points: Sequence[ParetoPoint]) -> None:
        """Replace the plotted variants; points lacking x or y are left out."""
        self.points = [p for p in points if _finite(p.x) and _finite(p.y)]
        xs = [p.x for p in self.points]
        ys = [p.y for p in self.points]
        self.front = pareto_front(xs, ys)
        on = set(self.front)
        sizes = bubble_sizes([p.memory for p in self.points])
        spots = [
            {
                "pos": (p.x, p.y),
                "size": float(sizes[i]),
                "data": i,
                "brush": pg.mkBrush(FRONT_COLOR if i in on else OTHER_COLOR + "b0"),
                "pen": pg.mkPen("#000", width=1.5) if i in on else pg.mkPen(None),
                "symbol": "o",
            }
            for i, p in enumerate(self.points)
        ]
        self.scatter.setData(spots)
        self.frontier_line.setData([xs[i] for i in self.front], [ys[i] for i in self.front])
        for item in self._labels:
            self.removeItem(item)
        self._labels = []
        for i, p in enumerate(self.points):
            colors = plot_colors()
            text = pg.TextItem(p.label, color=colors.accent if i in on else colors.foreground, anchor=(-0.15, 1.1))
            text.highlighted = i in on  # the theme recolours it when the appearance changes
            text.setPos(p.x, p.y)
            self.addItem(text)
            self._labels.append(text)
        if self.points:
            plot = self.getPlotItem()
            plot.enableAutoRange()
            # One point (or one value on an axis) would auto-range to a zero-width span with
            # ticks like 96.3000000000002; give such an axis a readable ±5 % window instead.
            for values, set_range in ((xs, plot.setXRange), (ys, plot.setYRange)):
                lo, hi = min(values), max(values)
                if hi - lo < 1e-9 * max(1.0, abs(hi)):
                    pad = max(abs(hi) * 0.05, 1e-3)
                    set_range(lo - pad, hi + pad, padding=0)

    def front_labels(self) -> list[str]:
        return [self.points[i].label for i in self.front]

    # -- hover ----------------------------------------------------------------------------
    def describe(self, i: int) -> str:
        p = self.points[i]
        lines = [
            f"{p.label}{'  (Pareto frontier)' if i in self.front else ''}",
            f"{self.ylabel}: {p.y:.2f}",
            f"{self.xlabel}: {self.x_format(p.x)}",
        ]
        if p.memory:
            lines.append(f"peak memory: {human_bytes(p.memory)}")
        return "\n".join(lines)

    def _tip(self, x, y, data) -> str:
        return self.describe(int(data))

    def _on_hover(self, _item, points, _ev) -> None:
        self.hovered.emit(self.describe(int(points[0].data())) if len(points) else "")

    def point_scene_pos(self, i: int):
        """Scene position of point ``i`` (for tests and for placing annotations)."""
        p = self.points[i]
        return self.getPlotItem().vb.mapViewToScene(pg.Point(p.x, p.y))


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
