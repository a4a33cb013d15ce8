"""One table model for every result table: display text, raw values in RAW_ROLE."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor

RAW_ROLE = Qt.ItemDataRole.UserRole + 1


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Any], Any]
    fmt: Callable[[Any], str] = lambda v: "" if v is None else str(v)
    align_right: bool = False
    better: int = 0  # +1: values above ``neutral`` are better (green), -1: below; 0: no colour
    neutral: float = 0.0


BETTER = QColor("#2e9e4f")
WORSE = QColor("#d64541")


def fmt_float(digits: int) -> Callable[[Any], str]:
    def f(v):
        return "" if v is None else f"{v:.{digits}f}"

    return f


def fmt_percent(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


class RecordTableModel(QAbstractTableModel):
    """Rows are arbitrary records; columns say how to read and show them."""

    def __init__(self, columns: list[Column], parent=None):
        super().__init__(parent)
        self.columns = columns
        self.rows: list[Any] = []

    def rowCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def columnCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(self.columns)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section].header
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        col = self.columns[index.column()]
        try:
            value = col.value(self.rows[index.row()])
        except (KeyError, AttributeError, IndexError, TypeError):
            value = None
        if role == Qt.ItemDataRole.DisplayRole:
            return col.fmt(value)
        if role == RAW_ROLE:
            return value
        if role == Qt.ItemDataRole.TextAlignmentRole and col.align_right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and col.better and isinstance(value, (int, float)):
            if value != col.neutral:
                return BETTER if (value > col.neutral) == (col.better > 0) else WORSE
        return None

    def set_rows(self, rows: list[Any]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def append(self, row: Any) -> None:
        n = len(self.rows)
        self.beginInsertRows(QModelIndex(), n, n)
        self.rows.append(row)
        self.endInsertRows()

    def row_at(self, i: int) -> Any:
        return self.rows[i]


class RawSortProxy(QSortFilterProxyModel):
    """Sorts by raw values (numbers as numbers), not by display text."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSortRole(RAW_ROLE)

    def lessThan(self, left, right) -> bool:  # noqa: N802
        a, b = left.data(RAW_ROLE), right.data(RAW_ROLE)
        if a is None:
            return b is not None
        if b is None:
            return False
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)
