"""Per-class metrics of every variant, with deltas to the reference; sortable, exportable."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QTableView, QVBoxLayout, QWidget

from engine.measure.evaluate.rows import RowTable
from engine.measure.report.evaluation_plots import per_class_table
from gui.widgets.export import ExportBar
from gui.widgets.table_model import RAW_ROLE, Column, RawSortProxy, RecordTableModel, fmt_float

# A drop in F1 or recall beyond this shows in red.
WORSE = -0.005


def _fmt(digits: int):
    base = fmt_float(digits)
    return lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else base(v)


def _delta(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.4f}"


class DeltaTableModel(RecordTableModel):
    """Colours negative deltas red and positive ones green."""

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.ForegroundRole and self.columns[index.column()].header.startswith("Δ"):
            v = super().data(index, RAW_ROLE)
            if isinstance(v, float) and not math.isnan(v) and v != 0:
                return QColor("#c0392b") if v < WORSE else QColor("#1e8449") if v > 0 else None
        return super().data(index, role)


COLUMNS = [
    Column("class", lambda r: r[0]),
    Column("variant", lambda r: r[1]),
    Column("precision", lambda r: r[2], _fmt(4), True),
    Column("recall", lambda r: r[3], _fmt(4), True),
    Column("F1", lambda r: r[4], _fmt(4), True),
    Column("specificity", lambda r: r[5], _fmt(4), True),
    Column("ROC-AUC", lambda r: r[6], _fmt(4), True),
    Column("support", lambda r: r[7], _fmt(0), True),
    Column("Δ recall", lambda r: r[8], _delta, True),
    Column("Δ F1", lambda r: r[9], _delta, True),
    Column("flip rate", lambda r: r[10], _fmt(4), True),
]


class PerClassView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.tables: list[RowTable] = []
        self.model = DeltaTableModel(COLUMNS, self)
        proxy = RawSortProxy(self)
        proxy.setSourceModel(self.model)
        self.view = QTableView()
        self.view.setModel(proxy)
        self.view.setSortingEnabled(True)
        self.view.verticalHeader().setVisible(False)
        note = QLabel(
            "Deltas and flip rates are against the reference (the first model); sort by Δ F1 to find the classes quantization costs most."
        )
        note.setWordWrap(True)
        self.export = ExportBar("per_class", self.table, self.view)
        lay = QVBoxLayout(self)
        lay.addWidget(note)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.export)

    def set_tables(self, tables: list[RowTable]) -> None:
        self.tables = list(tables)
        _, rows = per_class_table(self.tables)
        self.model.set_rows(rows)
        self.view.resizeColumnsToContents()

    def table(self):
        return per_class_table(self.tables)
