"""A stored run reopened: what ran, on what, its metrics, per-class scores and iteration samples."""

from __future__ import annotations

import json

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.core.units import human_bytes
from engine.measure.results import RunRecord
from gui.widgets.plot_export import save_plots_button

MB = 1024.0 * 1024.0


class _SortItem(QTableWidgetItem):
    """Shows formatted text, sorts by the raw value (numbers as numbers, blanks first)."""

    def __init__(self, text: str, raw):
        super().__init__(text)
        self.raw = raw

    def __lt__(self, other) -> bool:
        a, b = self.raw, getattr(other, "raw", None)
        if a is None or b is None:
            return a is None and b is not None
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


def format_value(value, key: str = "") -> str:
    """Bytes in KB/MB, other floats to 6 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if key.endswith("_bytes"):
        return human_bytes(value)
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def fill_table(table: QTableWidget, header: list[str], rows: list[list], key_column: int | None = 0) -> None:
    """Rows of values into a read-only table that sorts by raw values.

    Cells of a row whose ``key_column`` names a ``*_bytes`` metric are shown in KB/MB.
    """
    table.setSortingEnabled(False)
    table.clear()
    table.setColumnCount(len(header))
    table.setHorizontalHeaderLabels(header)
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        key = str(row[key_column]) if key_column is not None else ""
        for j, value in enumerate(row):
            item = _SortItem(format_value(value, key if j != key_column else ""), value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            table.setItem(i, j, item)
    table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # keep the given order until a click
    table.setSortingEnabled(True)
    table.resizeColumnsToContents()
    table.horizontalHeader().setStretchLastSection(True)
    table.verticalHeader().setVisible(False)


def _flat(d: dict, prefix: str = "") -> list[list]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _flat(v, f"{prefix}{k}.")
        else:
            rows.append([f"{prefix}{k}", json.dumps(v) if isinstance(v, (list, tuple)) else v])
    return rows


SAMPLE_PLOTS = {
    # what: (title, column of RunRecord.samples, scale); MLX memory and RSS differ ~100x, so an axis each.
    "latency": ("Latency per iteration", 1, 1.0),
    "mlx": ("MLX active memory per iteration", 2, 1 / MB),
    "rss": ("Process RSS per iteration", 3, 1 / MB),
}


def samples_plot(records: list[RunRecord], what: str) -> pg.PlotWidget:
    """Latency ('latency'), MLX memory ('mlx') or process RSS ('rss') per iteration of one or more runs."""
    title, column, scale = SAMPLE_PLOTS[what]
    plot = pg.PlotWidget()
    plot.setBackground("w")
    plot.showGrid(x=True, y=True, alpha=0.3)
    plot.addLegend(offset=(-10, 10))
    plot.setLabel("bottom", "iteration")
    plot.setTitle(title, color="#333")
    plot.setLabel("left", "ms" if what == "latency" else "MB")
    plot.getAxis("left").enableAutoSIPrefix(False)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    for k, r in enumerate(records):
        if not r.samples:
            continue
        s = np.asarray(r.samples, dtype=float)
        plot.plot(
            s[:, 0] + 1, s[:, column] * scale, pen=pg.mkPen(colors[k % 4], width=1.5), name=f"#{r.id} {r.variant}"
        )
    return plot


def sample_plots(records: list[RunRecord], prefix: str) -> tuple[list[tuple[str, pg.PlotWidget]], QSplitter]:
    """The three per-iteration plots, named for export, side by side in a splitter."""
    plots = [(f"{prefix} {what}", samples_plot(records, what)) for what in SAMPLE_PLOTS]
    split = QSplitter(Qt.Orientation.Horizontal)
    for _, plot in plots:
        split.addWidget(plot)
    return plots, split


class RunDetailsDialog(QDialog):
    """Everything stored about one run."""

    def __init__(self, record: RunRecord, parent=None):
        super().__init__(parent)
        self.record = record
        self.setWindowTitle(f"Run #{record.id}: {record.variant}")
        self.resize(980, 640)
        head = QLabel(
            f"<b>{record.variant}</b> · {record.kind} · {record.created}<br>"
            f"model hash <tt>{record.model_hash or '-'}</tt><br>{record.model_path or ''}"
            + (f"<br>dataset {record.dataset}" if record.dataset else "")
        )
        head.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tabs = QTabWidget()

        self.metrics = QTableWidget()
        fill_table(self.metrics, ["metric", "value"], [[k, v] for k, v in record.metrics.items()])
        self.tabs.addTab(self.metrics, "Metrics")

        self.per_class = QTableWidget()
        if record.per_class:
            # Classes are those with a support row; confusion cells ("a -> b") and reliability
            # bins ("uniform:03") share the per-class column but are not classes.
            classes = list(dict.fromkeys(c for m, c, _ in record.per_class if m == "support"))
            classes = classes or list(dict.fromkeys(c for _, c, _ in record.per_class))
            wanted = set(classes)
            metric_names = list(dict.fromkeys(m for m, c, _ in record.per_class if c in wanted))
            value = {(m, c): v for m, c, v in record.per_class}
            fill_table(
                self.per_class,
                ["class", *metric_names],
                [[c, *(value.get((m, c)) for m in metric_names)] for c in classes],
            )
            self.tabs.addTab(self.per_class, "Per class")

        self.settings_table = QTableWidget()
        rows = [["settings." + k, v] for k, v in _flat(record.settings)]
        rows += [["environment." + k, v] for k, v in _flat(record.environment)]
        fill_table(self.settings_table, ["key", "value"], rows)
        self.tabs.addTab(self.settings_table, "Settings && environment")

        self.plots: list[tuple[str, pg.PlotWidget]] = []
        if record.samples:
            self.plots, split = sample_plots([record], f"run {record.id}")
            w = QWidget()
            lay = QVBoxLayout(w)
            lay.addWidget(split, 1)
            bar = QHBoxLayout()
            bar.addStretch(1)
            bar.addWidget(save_plots_button(self, self.plots))
            lay.addLayout(bar)
            self.tabs.addTab(w, f"Iterations ({len(record.samples)})")
            self.tabs.setCurrentWidget(w)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(head)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(buttons)
