"""Reliability diagram: accuracy against confidence per bin, one curve per variant."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from engine.measure.evaluate.rows import RowTable
from engine.measure.report.evaluation_plots import reliability_table
from gui.widgets.export import ExportBar
from gui.widgets.live_plot import PALETTE


class ReliabilityView(QWidget):
    """Points sized by how many images fall in the bin; the dashed diagonal is perfect calibration."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.tables: list[RowTable] = []
        self.strategy = QComboBox()
        self.strategy.addItems(["uniform", "adaptive"])
        self.strategy.currentTextChanged.connect(self.refresh)
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setLabel("bottom", "mean confidence in bin")
        self.plot.setLabel("left", "accuracy in bin")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setXRange(0, 1, padding=0.02)
        self.plot.setYRange(0, 1, padding=0.02)
        self.plot.setAspectLocked(True)
        self.plot.addLegend(offset=(10, 10))
        self.summary = QLabel("")
        self.export = ExportBar("reliability", self.table, self.plot)
        top = QHBoxLayout()
        top.addWidget(QLabel("Bins"))
        top.addWidget(self.strategy)
        top.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.summary)
        lay.addWidget(self.export)

    def set_tables(self, tables: list[RowTable]) -> None:
        self.tables = list(tables)
        self.refresh()

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        strategy = self.strategy.currentText()
        return {t.variant: t.reliability(strategy) for t in self.tables}

    def refresh(self) -> None:
        self.plot.clear()
        legend = self.plot.getPlotItem().legend
        if legend is not None:
            legend.clear()
        self.plot.plot([0, 1], [0, 1], pen=pg.mkPen("#999", width=1, style=pg.QtCore.Qt.PenStyle.DashLine))
        strategy = self.strategy.currentText()
        parts = []
        for i, (name, b) in enumerate(self.curves().items()):
            if not len(b["count"]):
                continue
            color = PALETTE[i % len(PALETTE)]
            sizes = 5 + 12 * np.sqrt(b["count"] / b["count"].max())
            ece = self.tables[i].get(f"ece_{strategy}")
            self.plot.plot(
                b["confidence"],
                b["accuracy"],
                pen=pg.mkPen(color, width=1.5),
                symbol="o",
                symbolSize=sizes,
                symbolBrush=color,
                name=f"{name} (ECE {ece:.4f})",
            )
            parts.append(
                f"{name}: ECE {ece:.4f}, NLL {self.tables[i].get('nll'):.4f}, Brier {self.tables[i].get('brier'):.4f}"
            )
        self.summary.setText("   ·   ".join(parts))

    def table(self):
        return reliability_table(self.tables, self.strategy.currentText())
