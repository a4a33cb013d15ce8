"""Export helpers for views: CSV from engine tables, PNG from a widget grab; remembered folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QHBoxLayout, QPushButton, QWidget

from engine.core.fileio import atomic_open, write_csv
from gui.dialogs import save_file

Table = tuple[list[str], list[list]]


def ask_save_path(parent: QWidget, title: str, default_name: str, file_filter: str) -> Path | None:
    chosen = save_file(parent, title, "exports", default_name, file_filter)
    return chosen[0] if chosen else None


def save_table_csv(table: Table, path: str | Path) -> Path:
    header, rows = table
    return write_csv(path, header, rows)


def save_widget_png(widget: QWidget, path: str | Path) -> Path:
    """Grab the widget as it is drawn and write it atomically as PNG."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not widget.grab().save(buf, "PNG"):
        raise OSError("could not render the view as PNG")
    buf.close()
    with atomic_open(path, "wb") as f:
        f.write(bytes(data.data()))
    return Path(path)


class ExportBar(QWidget):
    """'Export CSV…' and 'Export PNG…' buttons for one view.

    ``table`` returns the view's data as (header, rows); ``target`` is the widget to grab.
    ``export_csv(path)`` / ``export_png(path)`` skip the dialog (tests, scripts).
    """

    def __init__(self, name: str, table: Callable[[], Table], target: QWidget, parent=None):
        super().__init__(parent)
        self.name = name
        self._table = table
        self._target = target
        self.csv_button = QPushButton("Export CSV…")
        self.png_button = QPushButton("Export PNG…")
        self.csv_button.clicked.connect(lambda: self.export_csv())
        self.png_button.clicked.connect(lambda: self.export_png())
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addStretch(1)
        lay.addWidget(self.csv_button)
        lay.addWidget(self.png_button)

    def _report(self, path: Path) -> None:
        window = self.window()
        if hasattr(window, "statusBar"):
            window.statusBar().showMessage(f"Exported {path}", 8000)

    def _fail(self, path, exc: OSError) -> None:
        window = self.window()
        if hasattr(window, "show_error"):
            window.show_error("Export failed", f"{path}: {exc.strerror or exc}")

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        target = Path(path) if path else ask_save_path(self, "Export CSV", f"{self.name}.csv", "CSV (*.csv)")
        if target is None:
            return None
        try:
            out = save_table_csv(self._table(), target)
        except OSError as exc:
            self._fail(target, exc)
            return None
        self._report(out)
        return out

    def export_png(self, path: str | Path | None = None) -> Path | None:
        target = Path(path) if path else ask_save_path(self, "Export PNG", f"{self.name}.png", "PNG (*.png)")
        if target is None:
            return None
        try:
            out = save_widget_png(self._target, target)
        except OSError as exc:
            self._fail(target, exc)
            return None
        self._report(out)
        return out
