"""A live line plot: a numpy buffer and one timer that redraws at most 10 times a second while data arrives.

Painting must never stall the event loop (nor, through the GIL, the engine thread it times):
the engine delivers samples at ~10 Hz, so the plot repaints at most that often; the curves
are clipped to the view and peak-downsampled; and the axes and legend keep a fixed geometry
during a run (fixed axis sizes, ranges that only grow, in 1-2-5 steps), so a repaint never
relayouts the plot or rescans the data for its bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

from gui.theme import plot_colors

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
REDRAW_INTERVAL_MS = 100  # at most 10 repaints a second: the engine's partial results arrive at ~10 Hz
LEFT_AXIS_WIDTH = 56
BOTTOM_AXIS_HEIGHT = 36


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= ``value`` (> 0)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10.0**exp >= value * (1 - 1e-12):
            return m * 10.0**exp
    return 10.0 ** (exp + 1)


def grown_range(lo: float, hi: float) -> tuple[float, float]:
    """A y range that holds [lo, hi] with a margin, snapped outward to a 1-2-5 step so it rarely changes."""
    span = max(hi - lo, abs(hi) * 1e-3, 1e-9)
    step = nice_ceiling(span / 4)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step + (step if hi == lo else 0.0)


class LivePlot(pg.PlotWidget):
    """Curves keyed by name; ``append`` is cheap, drawing happens on the timer."""

    def __init__(self, title: str, ylabel: str, xlabel: str = "iteration", parent=None):
        super().__init__(parent=parent)
        self.setBackground("w")
        self.setTitle(title, color=plot_colors().foreground)
        self.setLabel("left", ylabel)
        self.getAxis("left").enableAutoSIPrefix(False)  # "0.75 MB", not "750 MB (x0.001)"
        self.setLabel("bottom", xlabel)
        # No grid: its translucent lines cost as much to paint as everything else together (4 ms a plot here).
        self.addLegend(offset=(-10, 10))
        self.getPlotItem().setClipToView(True)
        # Fixed geometry: tick labels of a new width would relayout the whole plot at every repaint.
        self.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
        self.getAxis("bottom").setHeight(BOTTOM_AXIS_HEIGHT)
        self.getPlotItem().vb.disableAutoRange()  # ranges come from the running bounds, not a data scan
        self._bounds: tuple[float, float] | None = None  # running (min, max) of every finite value
        self._shown: tuple[float, float, float] | None = None  # (x max, y lo, y hi) last set on the axes
        self.repaints = 0  # redraws done (tests compare it with the data rate)
        self._data: dict[str, list[np.ndarray | int]] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._dirty = False
        self._stopped = False
        # Single-shot, armed by append(): an idle plot keeps no timer running.
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self._redraw)

    def _series(self, name: str):
        if name not in self._data:
            self._data[name] = [np.empty(256, dtype=np.float64), 0]
            color = PALETTE[(len(self._curves)) % len(PALETTE)]
            curve = self.plot([], [], name=name, pen=pg.mkPen(color, width=1))
            curve.setDownsampling(auto=True, method="peak")
            self._curves[name] = curve
        return self._data[name]

    def append(self, name: str, values) -> None:
        series = self._series(name)
        values = np.asarray(values, dtype=np.float64).ravel()
        buf, n = series
        if n + len(values) > len(buf):
            grown = np.empty(max(2 * len(buf), n + len(values)), dtype=np.float64)
            grown[:n] = buf[:n]
            buf = series[0] = grown
        buf[n : n + len(values)] = values
        series[1] = n + len(values)
        finite = values[np.isfinite(values)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            self._bounds = (lo, hi) if self._bounds is None else (min(lo, self._bounds[0]), max(hi, self._bounds[1]))
        self._dirty = True
        if not self._stopped and not self._timer.isActive():
            self._timer.start()

    def values(self, name: str) -> np.ndarray:
        buf, n = self._data.get(name, [np.empty(0), 0])
        return buf[:n].copy()

    def names(self) -> list[str]:
        return list(self._data)

    def clear_series(self) -> None:
        for curve in self._curves.values():
            self.removeItem(curve)
        legend = self.getPlotItem().legend
        if legend is not None:
            legend.clear()
        self._data.clear()
        self._curves.clear()
        self._bounds = None
        self._shown = None
        self._dirty = False

    def _redraw(self) -> None:
        if not self._dirty:
            return
        longest = 1
        for name, (buf, n) in self._data.items():
            self._curves[name].setData(np.arange(1, n + 1), buf[:n], skipFiniteCheck=True)
            longest = max(longest, n)
        self._set_ranges(longest)
        self.repaints += 1
        self._dirty = False

    def _set_ranges(self, longest: int) -> None:
        """Grow the axes' ranges only when the data leaves them (x in 1-2-5 steps, y snapped outward)."""
        x_max = nice_ceiling(longest) if self._shown is None or longest > self._shown[0] else self._shown[0]
        lo, hi = self._bounds if self._bounds is not None else (0.0, 1.0)
        if self._shown is not None and self._shown[1] <= lo and hi <= self._shown[2]:
            y_lo, y_hi = self._shown[1], self._shown[2]
        else:
            y_lo, y_hi = grown_range(lo, hi)
        if (x_max, y_lo, y_hi) != self._shown:
            self.setRange(xRange=(1, max(x_max, 2)), yRange=(y_lo, y_hi), padding=0)
            self._shown = (x_max, y_lo, y_hi)

    def stop(self) -> None:
        self._stopped = True
        self._timer.stop()
