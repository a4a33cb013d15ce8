"""Files handed to the app from outside: Finder, the Dock icon, the command line.

macOS delivers "open this document" as a QFileOpenEvent sent to the
QApplication object, so ``StudioApplication`` overrides ``event()`` (cheaper
than a global event filter, which would see every event of every widget).
``FileOpener`` collects the paths of one burst (Finder sends one event per
selected file) and routes them: images to the Inference tab, model bundle
folders to Models, checkpoints to the import dialog.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QApplication

from engine.kinds.files import BUNDLE, CHECKPOINT, IMAGE, classify, describe_unusable


class StudioApplication(QApplication):
    """The app's QApplication: passes open-document events to one handler (the main window)."""

    def __init__(self, argv: list[str]):
        super().__init__(argv)
        self._file_handler: Callable[[list[str]], None] | None = None
        self._pending: list[str] = []

    def set_file_handler(self, handler: Callable[[list[str]], None] | None) -> None:
        """Route opened files to ``handler``; files that arrived before it are delivered now."""
        self._file_handler = handler
        if handler is not None and self._pending:
            pending, self._pending = self._pending, []
            handler(pending)

    def file_handler(self) -> Callable[[list[str]], None] | None:
        return self._file_handler

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FileOpen:
            path = event.file() or event.url().toLocalFile()
            if path:
                if self._file_handler is not None:
                    self._file_handler([path])
                else:
                    self._pending.append(path)
            return True
        return super().event(event)


class FileOpener(QObject):
    """Routes paths to the main window's tabs, a burst at a time, on the next event-loop turn."""

    routed = Signal(object)  # {kind: [paths]} and "unusable": [messages], after each burst

    def __init__(self, window):
        super().__init__(window)
        self._window = window
        self._queue: list[str] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._flush)

    def open(self, paths: list[str]) -> None:
        """Queue paths; several calls in a row (one per Finder file) become one burst."""
        self._queue.extend(str(p) for p in paths)
        self._timer.start()

    @Slot()
    def _flush(self) -> None:
        paths, self._queue = self._queue, []
        groups: dict[str, list[str]] = {IMAGE: [], BUNDLE: [], CHECKPOINT: [], "unusable": []}
        for p in dict.fromkeys(paths):  # keep order, drop repeats
            kind = classify(p)
            if kind:
                groups[kind].append(p)
            else:
                groups["unusable"].append(describe_unusable(p))
        w = self._window
        for path in groups[BUNDLE]:
            w.tabs.setCurrentWidget(w.models_tab)
            w.models_tab.open_path(path)
        if groups[IMAGE]:
            w.tabs.setCurrentWidget(w.inference_tab)
            w.inference_tab.drop.handle_files(groups[IMAGE])
        if groups["unusable"]:
            w.show_error("Cannot open", "\n".join(groups["unusable"]))
        self.routed.emit(groups)
        # Last: each checkpoint opens the (modal) import dialog with its file filled in.
        for path in groups[CHECKPOINT]:
            w.tabs.setCurrentWidget(w.models_tab)
            w.models_tab.import_file(path)
