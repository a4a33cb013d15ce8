"""Robustness curves: a metric against corruption severity (0 = clean), per variant and corruption."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from engine.measure.evaluate.rows import RowTable
from engine.measure.report.evaluation_plots import robustness_table
from gui.widgets.export import ExportBar
from gui.widgets.live_plot import PALETTE

METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "ece_uniform", "nll", "flip_rate", "mean_kl", "delta_accuracy")


class RobustnessView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.tables: list[RowTable] = []
        self.metric = QComboBox()
        self.metric.addItems(METRICS)
        self.metric.currentTextChanged.connect(self.refresh)
        self.layout_widget = pg.GraphicsLayoutWidget()
        self.layout_widget.setBackground("w")
        self.message = QLabel("Run an evaluation with corruptions to see robustness curves.")
        self.export = ExportBar("robustness", self.table, self.layout_widget)
        top = QHBoxLayout()
        top.addWidget(QLabel("Metric"))
        top.addWidget(self.metric)
        top.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.message)
        lay.addWidget(self.layout_widget, 1)
        lay.addWidget(self.export)
        self.plots: dict[str, pg.PlotItem] = {}

    def set_tables(self, tables: list[RowTable]) -> None:
        self.tables = list(tables)
        self.refresh()

    def series(self) -> dict[str, dict[str, dict[int, float]]]:
        """{corruption: {variant: {severity: value}}}."""
        metric = self.metric.currentText()
        out: dict[str, dict[str, dict[int, float]]] = {}
        for t in self.tables:
            for corruption, values in t.robustness(metric).items():
                if any(not math.isnan(v) for v in values.values()):  # the reference has no flip rate
                    out.setdefault(corruption, {})[t.variant] = values
        return out

    def refresh(self) -> None:
        self.layout_widget.clear()
        self.plots = {}
        data = self.series()
        self.message.setVisible(not data)
        metric = self.metric.currentText()
        names = [t.variant for t in self.tables]
        for i, (corruption, by_variant) in enumerate(data.items()):
            plot = self.layout_widget.addPlot(row=i // 3, col=i % 3, title=corruption)
            plot.showGrid(x=True, y=True, alpha=0.3)
            plot.setLabel("bottom", "severity")
            plot.setLabel("left", metric)
            if i == 0:
                plot.addLegend(offset=(10, 10))
            for name, values in by_variant.items():
                color = PALETTE[names.index(name) % len(PALETTE)]
                plot.plot(
                    list(values),
                    list(values.values()),
                    pen=pg.mkPen(color, width=1.5),
                    symbol="o",
                    symbolSize=6,
                    symbolBrush=color,
                    name=name,
                )
            self.plots[corruption] = plot

    def table(self):
        return robustness_table(self.tables, self.metric.currentText())
