"""Two stored runs side by side: every metric with B − A and B / A, settings and environment differences."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QTableWidget,
    QTabWidget,
    QVBoxLayout,
)

from engine.core.fileio import write_csv
from engine.measure.compare import differing_keys, metric_deltas, metric_direction
from engine.measure.results import RunRecord
from gui.widgets.export import ask_save_path
from gui.widgets.plot_export import save_plots_button
from gui.widgets.run_details import _flat, fill_table, format_value, sample_plots

BETTER = QColor("#1a7f37")
WORSE = QColor("#c62828")


class CompareDialog(QDialog):
    """Run A and run B: metrics with deltas (green = B better, red = B worse), differing settings, samples."""

    def __init__(self, a: RunRecord, b: RunRecord, parent=None):
        super().__init__(parent)
        self.a, self.b = a, b
        self.deltas = metric_deltas(a.metrics, b.metrics)
        self.setWindowTitle(f"Compare run #{a.id} with run #{b.id}")
        self.resize(1000, 680)
        head = QLabel(
            f"<b>A</b> #{a.id} {a.variant} · {a.kind} · {a.created} · <tt>{(a.model_hash or '-')[:12]}</tt><br>"
            f"<b>B</b> #{b.id} {b.variant} · {b.kind} · {b.created} · <tt>{(b.model_hash or '-')[:12]}</tt>"
        )
        head.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tabs = QTabWidget()

        self.metrics = QTableWidget()
        fill_table(
            self.metrics,
            ["metric", "A", "B", "B − A", "B / A"],
            [[d.metric, d.a, d.b, d.delta, d.ratio] for d in self.deltas],
        )
        for row in range(self.metrics.rowCount()):  # a ratio is a plain number, not bytes
            item = self.metrics.item(row, 4)
            item.setText(format_value(item.raw))
        self._color_deltas()
        self.tabs.addTab(self.metrics, "Metrics")

        self.differences = QTableWidget()
        fa = dict(_flat({"settings": a.settings, "environment": a.environment}))
        fb = dict(_flat({"settings": b.settings, "environment": b.environment}))
        fa.update(model_hash=a.model_hash, recipe=a.recipe, dataset=a.dataset)
        fb.update(model_hash=b.model_hash, recipe=b.recipe, dataset=b.dataset)
        keys = differing_keys(fa, fb)
        fill_table(self.differences, ["differs", "A", "B"], [[k, fa.get(k), fb.get(k)] for k in keys])
        self.tabs.addTab(self.differences, f"Differences ({len(keys)})")

        self.plots = []
        if a.samples or b.samples:
            self.plots, split = sample_plots([a, b], "Compare")
            self.tabs.addTab(split, "Iterations")

        export = QPushButton("Export CSV…")
        export.clicked.connect(self.export_csv)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(export, QDialogButtonBox.ButtonRole.ActionRole)
        if self.plots:
            buttons.addButton(save_plots_button(self, self.plots), QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(head)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(buttons)

    def _color_deltas(self) -> None:
        for row in range(self.metrics.rowCount()):
            name = self.metrics.item(row, 0).text()
            d = next(x for x in self.deltas if x.metric == name)
            direction = metric_direction(name)
            if d.delta is None or direction == 0 or d.delta == 0:
                continue
            better = (d.delta > 0) == (direction > 0)
            for col in (3, 4):
                self.metrics.item(row, col).setForeground(QBrush(BETTER if better else WORSE))

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """metric,a,b,delta,ratio with raw values."""
        if path is None:
            path = ask_save_path(self, "Export comparison", f"compare_{self.a.id}_{self.b.id}.csv", "CSV (*.csv)")
            if path is None:
                return None
        return write_csv(
            path,
            ["metric", f"run_{self.a.id}", f"run_{self.b.id}", "delta", "ratio"],
            ([d.metric, d.a, d.b, d.delta, d.ratio] for d in self.deltas),
        )
