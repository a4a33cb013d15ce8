"""Confusion matrices side by side: reference, variant, and their difference, as heat-map tables."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.measure.evaluate.rows import RowTable
from engine.measure.report.evaluation_plots import confusion_table
from gui.widgets.export import ExportBar

WHITE = np.array([255.0, 255.0, 255.0])
BLUE = np.array([8.0, 48.0, 107.0])
RED = np.array([178.0, 24.0, 43.0])
DIVERGING_NEG = np.array([33.0, 102.0, 172.0])


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> QColor:
    c = a + (b - a) * float(np.clip(t, 0.0, 1.0))
    return QColor(int(c[0]), int(c[1]), int(c[2]))


class MatrixModel(QAbstractTableModel):
    """A square matrix shown as numbers on coloured cells (sequential or diverging)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.matrix = np.zeros((0, 0))
        self.labels: list[str] = []
        self.diverging = False
        self.percent = False

    def set_matrix(self, matrix: np.ndarray | None, labels: list[str], diverging: bool, percent: bool) -> None:
        self.beginResetModel()
        self.matrix = np.zeros((0, 0)) if matrix is None else np.asarray(matrix, dtype=np.float64)
        self.labels = list(labels) if matrix is not None else []
        self.diverging = diverging
        self.percent = percent
        self.endResetModel()

    def rowCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else self.matrix.shape[0]

    def columnCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else self.matrix.shape[1]

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and section < len(self.labels):
            return self.labels[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return "true class" if orientation == Qt.Orientation.Vertical else "predicted class"
        return None

    def _scale(self) -> float:
        if self.matrix.size == 0:
            return 1.0
        return max(float(np.abs(self.matrix).max()), 1e-12)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        v = float(self.matrix[index.row(), index.column()])
        if role == Qt.ItemDataRole.DisplayRole:
            if self.percent:
                return f"{100 * v:+.1f}" if self.diverging else f"{100 * v:.1f}"
            return f"{v:+.0f}" if self.diverging and v else f"{v:.0f}"
        if role == Qt.ItemDataRole.UserRole:
            return v
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        t = abs(v) / self._scale()
        if role == Qt.ItemDataRole.BackgroundRole:
            if self.diverging:
                return _mix(WHITE, RED if v > 0 else DIVERGING_NEG, t) if v else QColor(255, 255, 255)
            return _mix(WHITE, BLUE, t)
        if role == Qt.ItemDataRole.ForegroundRole:
            return QColor(255, 255, 255) if t > 0.6 else QColor(20, 20, 20)
        return None


class MatrixPanel(QWidget):
    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        self.title = QLabel(title)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.model = MatrixModel(self)
        self.view = QTableView()
        self.view.setModel(self.model)
        for header in (self.view.horizontalHeader(), self.view.verticalHeader()):
            header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
            header.setMinimumSectionSize(24)
        self.view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        # Counts like "100" must show in full in narrow cells (an elided "1…" reads as a number).
        self.view.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.view.setStyleSheet("QTableView::item { padding: 0px; }")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.view, 1)


class ConfusionView(QWidget):
    """Reference | variant | variant − reference; counts or row-normalised (recall per true class)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.tables: list[RowTable] = []
        self.variant = QComboBox()
        self.variant.currentIndexChanged.connect(self.refresh)
        self.normalize = QCheckBox("Row-normalised (share of each true class)")
        self.normalize.toggled.connect(self.refresh)
        self.ref_panel = MatrixPanel("reference")
        self.var_panel = MatrixPanel("variant")
        self.diff_panel = MatrixPanel("difference")
        self.legend = QLabel(
            "Difference: <span style='color:#b2182b'>red</span> = more images in the variant's cell, "
            "<span style='color:#2166ac'>blue</span> = fewer (a blue diagonal cell is a lost correct prediction)."
        )
        self.legend.setWordWrap(True)
        self.matrices = QWidget()
        grid = QGridLayout(self.matrices)
        grid.setContentsMargins(0, 0, 0, 0)
        for i, p in enumerate((self.ref_panel, self.var_panel, self.diff_panel)):
            grid.addWidget(p, 0, i)
        grid.addWidget(self.legend, 1, 0, 1, 3)
        self.export = ExportBar("confusion", self.table, self.matrices)
        top = QHBoxLayout()
        top.addWidget(QLabel("Variant"))
        top.addWidget(self.variant, 1)
        top.addWidget(self.normalize)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.matrices, 1)
        lay.addWidget(self.export)

    def set_tables(self, tables: list[RowTable]) -> None:
        self.tables = list(tables)
        current = self.variant.currentText()
        self.variant.blockSignals(True)
        self.variant.clear()
        for t in self.tables[1:] or self.tables[:1]:
            self.variant.addItem(t.variant)
        i = self.variant.findText(current)
        self.variant.setCurrentIndex(max(0, i))
        self.variant.blockSignals(False)
        self.refresh()

    def _pair(self) -> tuple[RowTable | None, RowTable | None]:
        if not self.tables:
            return None, None
        name = self.variant.currentText()
        var = next((t for t in self.tables if t.variant == name), None)
        return self.tables[0], var

    def _matrix(self, t: RowTable | None) -> np.ndarray | None:
        cm = None if t is None else t.confusion()
        if cm is None or not self.normalize.isChecked():
            return cm
        rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
        return np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)

    def refresh(self) -> None:
        ref, var = self._pair()
        labels = ref.classes() if ref is not None else []
        pct = self.normalize.isChecked()
        a, b = self._matrix(ref), self._matrix(var)
        same = var is None or ref is None or var.variant == ref.variant
        self.ref_panel.title.setText(f"<b>{ref.variant}</b>" if ref else "reference")
        self.ref_panel.model.set_matrix(a, labels, False, pct)
        self.var_panel.setVisible(not same)
        self.diff_panel.setVisible(not same)
        self.legend.setVisible(not same)
        if not same:
            self.var_panel.title.setText(f"<b>{var.variant}</b>")
            self.var_panel.model.set_matrix(b, labels, False, pct)
            self.diff_panel.title.setText(f"<b>{var.variant} − {ref.variant}</b>")
            diff = b - a if a is not None and b is not None and a.shape == b.shape else None
            self.diff_panel.model.set_matrix(diff, labels, True, pct)

    def table(self):
        ref, var = self._pair()
        if ref is None:
            return ["matrix", "true", "predicted", "count"], []
        return confusion_table(ref, var or ref)
