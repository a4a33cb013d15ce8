"""A drop target for image files that validates paths with the engine before accepting."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QLabel

from engine.image.data.images import check_image

PROMPT = "Drop image files here\n(or File ▸ Open Image…)"


class DropZone(QLabel):
    """Emits ``images_dropped`` with readable images and ``rejected`` naming each bad file."""

    images_dropped = Signal(object)  # list[str]
    rejected = Signal(object)  # list[str] messages

    def __init__(self, parent=None):
        super().__init__(PROMPT, parent)
        self.setAcceptDrops(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(220, 160)
        self._set_highlight(False)

    def _set_highlight(self, on: bool) -> None:
        color = "#3a7bd5" if on else "#999"
        self.setStyleSheet(f"QLabel {{ border: 2px dashed {color}; border-radius: 8px; padding: 12px; }}")

    @staticmethod
    def local_files(event) -> list[str]:
        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self.local_files(event):
            self._set_highlight(True)
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self._set_highlight(False)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self._set_highlight(False)
        files = self.local_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.handle_files(files)

    def handle_files(self, files: list[str]) -> None:
        """Validate and announce files (also used by the Open Image dialog)."""
        good, bad = [], []
        for f in files:
            problem = check_image(f)
            if problem is None:
                good.append(str(Path(f)))
            else:
                bad.append(problem)
        if bad:
            self.rejected.emit(bad)
        if good:
            self.images_dropped.emit(good)
