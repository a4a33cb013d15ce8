"""Serve a model over HTTP from the Inference tab: a start/stop toggle, the URL and the status.

The service runs on its own threads (engine.serve.server.ServiceServer): its engine thread
loads its own copy of the chosen model and runs every request; uvicorn runs on another.
Neither touches the GUI's engine thread, so the app stays free to quantize or benchmark
while the service answers; the copy costs the model's size in memory once more (a few
MB for a quantized classifier). Status changes arrive from those threads as a queued Qt
signal and are shown here on the GUI thread.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
)

from engine.core.errors import UserError
from engine.serve.config import INSTALL_HINT, ServeSettings, missing_serve_modules
from gui.state import AppState, settings

DEFAULT_PORT = 8000


class ServePanel(QGroupBox):
    """Start and stop the inference service for one of the known models."""

    status_changed = Signal(object)  # ServerStatus; emitted on service threads, handled on the GUI thread

    def __init__(self, state: AppState, parent=None):
        super().__init__("Serve over HTTP", parent)
        self.state = state
        self.server = None
        self.status = None
        self._stopper: threading.Thread | None = None

        self.model = QComboBox()
        self.model.setToolTip("The model the service loads (its own copy, on its own thread)")
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        self.port.setValue(int(settings().value("serve/port", DEFAULT_PORT)))
        self.public = QCheckBox("Reachable from other machines")
        self.public.setToolTip("Listen on 0.0.0.0 instead of 127.0.0.1; the service has no authentication")
        self.toggle = QPushButton("Start serving")
        self.toggle.setCheckable(True)
        self.toggle.setToolTip("Start or stop the HTTP service (Ctrl+Shift+S)")
        self.toggle.setShortcut("Ctrl+Shift+S")
        self.toggle.clicked.connect(self._toggled)
        self.copy = QPushButton("Copy URL")
        self.copy.setEnabled(False)
        self.copy.clicked.connect(self._copy_url)
        self.label = QLabel("Stopped")
        self.label.setWordWrap(True)
        self.label.setOpenExternalLinks(True)
        self.label.setMinimumHeight(self.label.fontMetrics().lineSpacing() * 3)

        buttons = QHBoxLayout()
        buttons.addWidget(self.toggle)
        buttons.addWidget(self.copy)
        buttons.addStretch(1)
        form = QFormLayout(self)
        form.addRow("Model", self.model)
        form.addRow("Port", self.port)
        form.addRow("", self.public)
        form.addRow(buttons)
        form.addRow(self.label)

        self.status_changed.connect(self._on_status)
        state.models_changed.connect(self._refresh_models)
        self._refresh_models()
        missing = missing_serve_modules()
        if missing:
            self.toggle.setEnabled(False)
            self.label.setText(f"The HTTP service needs {', '.join(missing)}: <code>{INSTALL_HINT}</code>")

    # -- models ----------------------------------------------------------------------------
    @Slot()
    def _refresh_models(self) -> None:
        current = self.model.currentData()
        self.model.clear()
        entries = self.state.entries()
        for e in entries:
            self.model.addItem(e.display, e.path)
        quantized = [e.path for e in entries if e.quantized]
        # Keep the user's choice; otherwise offer the newest quantized variant.
        choice = current if current and self.model.findData(current) >= 0 else (quantized[-1] if quantized else None)
        if choice:
            self.model.setCurrentIndex(self.model.findData(choice))

    def select_model(self, path: str) -> None:
        i = self.model.findData(path)
        if i >= 0:
            self.model.setCurrentIndex(i)

    # -- serving -----------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.server is not None

    @Slot(bool)
    def _toggled(self, checked: bool) -> None:
        if checked:
            self.start()
        else:
            self.stop()

    def start(self) -> None:
        from engine.serve.server import ServiceServer

        model = self.model.currentData()
        if self.server is not None or not model:
            self.toggle.setChecked(self.server is not None)
            return
        settings().setValue("serve/port", self.port.value())
        host = "0.0.0.0" if self.public.isChecked() else "127.0.0.1"
        try:
            server = ServiceServer(
                ServeSettings(model=model, host=host, port=self.port.value()), self.status_changed.emit
            )
            server.start()
        except UserError as exc:
            self.toggle.setChecked(False)
            self._show_error(str(exc))
            return
        self.server = server
        self._set_editable(False)
        self.toggle.setText("Stop serving")

    def stop(self) -> None:
        """Stop in the background: open requests end, the model is unloaded."""
        server, self.server = self.server, None
        if server is None:
            return
        self.toggle.setEnabled(False)
        self.toggle.setText("Stopping …")
        self._stopper = threading.Thread(target=server.stop, name="mqs-serve-stop", daemon=True)
        self._stopper.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop and wait (the window is closing)."""
        server, self.server = self.server, None
        if server is not None:
            server.stop(timeout)
        if self._stopper is not None:
            self._stopper.join(timeout)
            self._stopper = None

    @Slot(object)
    def _on_status(self, status) -> None:
        self.status = status
        state = status.state
        if state == "starting":
            self.label.setText(f"Loading {self.model.currentText()} …")
        elif state == "running":
            self.label.setText(
                f"Serving <b>{status.model}</b> at <a href='{status.url}/docs'>{status.url}</a>"
                + (f"<br><span style='color:#c0392b'>{status.warning}</span>" if status.warning else "")
            )
            self.copy.setEnabled(True)
        elif state == "stopping":
            self.label.setText("Stopping …")
            self.copy.setEnabled(False)
        elif state in ("stopped", "failed"):
            self.copy.setEnabled(False)
            self._set_editable(True)
            self.toggle.setEnabled(True)
            self.toggle.setChecked(False)
            self.toggle.setText("Start serving")
            if state == "failed":
                self.server = None
                self.label.setText(f"<span style='color:#c0392b'>Not serving: {status.message}</span>")
                self._show_error(status.message)
            elif self.server is None:
                self.label.setText("Stopped")

    def _set_editable(self, on: bool) -> None:
        for w in (self.model, self.port, self.public):
            w.setEnabled(on)

    @Slot()
    def _copy_url(self) -> None:
        if self.status is not None and self.status.url:
            QGuiApplication.clipboard().setText(self.status.url)

    def _show_error(self, message: str) -> None:
        window = self.window()
        if hasattr(window, "show_error"):
            window.show_error("Cannot serve the model", message)
        else:
            self.label.setText(f"<span style='color:#c0392b'>{message}</span>")
