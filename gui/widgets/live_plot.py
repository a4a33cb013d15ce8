"""A live line plot: a numpy buffer and one timer that redraws at most every 50 ms while data arrives."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


class LivePlot(pg.PlotWidget):
    """Curves keyed by name; ``append`` is cheap, drawing happens on the timer."""

    def __init__(self, title: str, ylabel: str, xlabel: str = "iteration", parent=None):
        super().__init__(parent=parent)
        self.setBackground("w")
        self.setTitle(title, color="#333")
        self.setLabel("left", ylabel)
        self.getAxis("left").enableAutoSIPrefix(False)  # "0.75 MB", not "750 MB (x0.001)"
        self.setLabel("bottom", xlabel)
        self.showGrid(x=True, y=True, alpha=0.3)
        self.addLegend(offset=(-10, 10))
        self.getPlotItem().setClipToView(True)
        self._data: dict[str, list[np.ndarray | int]] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._dirty = False
        self._stopped = False
        # Single-shot, armed by append(): an idle plot keeps no timer running.
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._redraw)

    def _series(self, name: str):
        if name not in self._data:
            self._data[name] = [np.empty(256, dtype=np.float64), 0]
            color = PALETTE[(len(self._curves)) % len(PALETTE)]
            curve = self.plot([], [], name=name, pen=pg.mkPen(color, width=1.5))
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
        self._dirty = False

    def _redraw(self) -> None:
        if not self._dirty:
            return
        for name, (buf, n) in self._data.items():
            self._curves[name].setData(np.arange(1, n + 1), buf[:n])
        self._dirty = False

    def stop(self) -> None:
        self._stopped = True
        self._timer.stop()
