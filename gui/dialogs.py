"""File dialogs that start in the folder last used for the same kind of file.

Every open/save dialog in the app goes through here, so each kind ("datasets",
"checkpoints", "exports", ...) remembers its own folder in the settings under
``folders/<kind>``: the folder that holds the chosen file, or the parent of a chosen
folder (so sibling datasets or bundles are one click away).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from gui.state import settings


def last_folder(kind: str, default: str | Path | None = None) -> str:
    return str(settings().value(f"folders/{kind}", str(default or Path.home())))


def remember_folder(kind: str, chosen: str | Path) -> None:
    settings().setValue(f"folders/{kind}", str(Path(chosen).parent))


def open_file(
    parent: QWidget, title: str, kind: str, file_filter: str, default: str | Path | None = None
) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, title, last_folder(kind, default), file_filter)
    if not path:
        return None
    remember_folder(kind, path)
    return path


def open_files(
    parent: QWidget, title: str, kind: str, file_filter: str, default: str | Path | None = None
) -> list[str]:
    files, _ = QFileDialog.getOpenFileNames(parent, title, last_folder(kind, default), file_filter)
    if files:
        remember_folder(kind, files[0])
    return list(files)


def open_folder(parent: QWidget, title: str, kind: str, default: str | Path | None = None) -> str | None:
    path = QFileDialog.getExistingDirectory(parent, title, last_folder(kind, default))
    if not path:
        return None
    remember_folder(kind, path)
    return path


def save_file(parent: QWidget, title: str, kind: str, default_name: str, file_filter: str) -> tuple[Path, str] | None:
    """The chosen path and the filter the user picked, or None when cancelled."""
    start = Path(last_folder(kind)) / default_name
    path, chosen_filter = QFileDialog.getSaveFileName(parent, title, str(start), file_filter)
    if not path:
        return None
    remember_folder(kind, path)
    return Path(path), chosen_filter
