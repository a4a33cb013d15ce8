"""Inference tab: drop images, see top-k of the original and a quantized variant side by side."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.core import paths
from engine.image.data.images import IMAGE_SUFFIXES
from engine.jobs.image import PredictJob, PredictOutcome
from gui.dialogs import open_files
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.widgets.drop_zone import DropZone
from gui.widgets.gradcam_view import GradCamPanel, to_pixmap
from gui.widgets.job_owner import JobOwner
from gui.widgets.serve_panel import ServePanel
from gui.widgets.text_generation import TextGenerationWidget


class TopKTable(QTableWidget):
    def __init__(self, parent=None):
        super().__init__(0, 3, parent)
        self.setHorizontalHeaderLabels(["#", "label", "probability"])
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        # Compact rows, and room for the default top-5 without scrolling.
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.setMinimumHeight(self.horizontalHeader().sizeHint().height() + 5 * (self.fontMetrics().height() + 6) + 4)

    def show_predictions(self, preds) -> None:
        self.setRowCount(len(preds))
        for r, p in enumerate(preds):
            self.setItem(r, 0, QTableWidgetItem(str(r + 1)))
            self.setItem(r, 1, QTableWidgetItem(p.label))
            item = QTableWidgetItem(f"{100 * p.probability:.2f}%")
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.setItem(r, 2, item)

    def labels(self) -> list[str]:
        return [self.item(r, 1).text() for r in range(self.rowCount())]


class InferenceTab(JobOwner, QWidget):
    def __init__(self, state: AppState, router: JobRouter, parent=None):
        super().__init__(parent)
        self.state = state
        self.router = router
        self.outcome: PredictOutcome | None = None
        self._models: tuple[str, ...] = ()
        self._top_k = 0

        self.drop = DropZone()
        self.drop.images_dropped.connect(self.predict_images)
        self.drop.rejected.connect(self._on_rejected)
        self.open_btn = open_btn = QPushButton("Open Image…")
        open_btn.clicked.connect(self.open_images)
        self.samples = QListWidget()
        self.samples.setMaximumHeight(120)
        for f in sorted(paths.SAMPLES_DIR.glob("*.png")):
            item = QListWidgetItem(f.name)
            item.setData(Qt.ItemDataRole.UserRole, str(f))
            self.samples.addItem(item)
        self.samples.itemActivated.connect(self._sample_activated)
        self.samples.itemDoubleClicked.connect(self._sample_activated)

        left = QVBoxLayout()
        left.addWidget(self.drop, 1)
        left.addWidget(open_btn)
        left.addWidget(QLabel("Sample images (double-click)"))
        left.addWidget(self.samples)

        self.model_a = QComboBox()
        self.model_b = QComboBox()
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 20)
        self.top_k.setValue(int(settings().value("inference/top_k", 5)))
        form = QFormLayout()
        form.addRow("Original", self.model_a)
        form.addRow("Quantized", self.model_b)
        form.addRow("Top-k", self.top_k)

        self.images = QListWidget()
        self.images.setMaximumHeight(160)  # as tall as the preview beside it
        self.images.currentRowChanged.connect(self._show_row)
        self.preview = QLabel()
        self.preview.setFixedSize(160, 160)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("QLabel { background: #222; }")
        self.title_a = QLabel("Original")
        self.title_b = QLabel("Quantized")
        self.table_a = TopKTable()
        self.table_b = TopKTable()
        self.message = QLabel("")
        self.message.setWordWrap(True)

        grid = QGridLayout()
        grid.addWidget(self.title_a, 0, 0)
        grid.addWidget(self.title_b, 0, 1)
        grid.addWidget(self.table_a, 1, 0)
        grid.addWidget(self.table_b, 1, 1)

        top = QHBoxLayout()
        top.addWidget(self.preview)
        top.addWidget(self.images, 1)

        predictions = QWidget()
        pl = QVBoxLayout(predictions)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addLayout(form)
        pl.addLayout(top)
        pl.addLayout(grid, 1)
        self.gradcam = GradCamPanel(router)
        # Top-k above, Grad-CAM below; the user decides how much room each gets.
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(predictions)
        # Scrolled so the panel's own minimum does not set the window's minimum height.
        cam_scroll = QScrollArea()
        cam_scroll.setWidget(self.gradcam)
        cam_scroll.setWidgetResizable(True)
        cam_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        split.addWidget(cam_scroll)
        split.setChildrenCollapsible(False)
        right = QVBoxLayout()
        right.addWidget(split, 1)
        right.addWidget(self.message)

        self.image_page = QWidget()
        layout = QHBoxLayout(self.image_page)
        lw = QWidget()
        lw.setLayout(left)
        lw.setMaximumWidth(320)
        layout.addWidget(lw)
        layout.addLayout(right, 1)
        # Images and text (language models) are two modes of this tab.
        self.text_generation = TextGenerationWidget(state, router)
        self.modes = QTabWidget()
        self.modes.addTab(self.image_page, "Images")
        self.modes.addTab(self.text_generation, "Text (language models)")
        # Serving covers both kinds of model, so it is a mode of its own.
        self.serve_panel = ServePanel(state)
        serve_page = QWidget()
        sl = QVBoxLayout(serve_page)
        sl.addWidget(self.serve_panel)
        sl.addStretch(1)
        self.modes.addTab(serve_page, "Serve over HTTP")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.modes)

        state.models_changed.connect(self._refresh_models)

    # -- models ----------------------------------------------------------------------
    @Slot()
    def _refresh_models(self) -> None:
        a, b = self.model_a.currentData(), self.model_b.currentData()
        for combo in (self.model_a, self.model_b):
            combo.clear()
            for e in self.state.entries("image"):
                combo.addItem(e.display, e.path)
        entries = self.state.entries("image")
        floats = [e for e in entries if not e.quantized]
        quants = [e for e in entries if e.quantized]
        self._select(self.model_a, a or (floats[0].path if floats else None))
        # Keep the user's variant; otherwise compare against the newest quantized one.
        b_entry = self.state.entry(b) if b else None
        if (b_entry is None or not b_entry.quantized) and quants:
            b = quants[-1].path
        self._select(self.model_b, b)

    @staticmethod
    def _select(combo: QComboBox, path: str | None) -> None:
        if path:
            i = combo.findData(path)
            if i >= 0:
                combo.setCurrentIndex(i)

    def set_variant(self, path: str) -> None:
        """Show a new quantized variant in the right-hand column."""
        self._select(self.model_b, path)
        self.text_generation.set_variant(path)

    # -- images ----------------------------------------------------------------------
    @Slot()
    def open_images(self) -> None:
        patterns = " ".join(f"*{x}" for x in sorted(IMAGE_SUFFIXES))
        files = open_files(self, "Open images", "images", f"Images ({patterns});;All files (*)", paths.SAMPLES_DIR)
        if files:
            self.drop.handle_files(files)

    @Slot(QListWidgetItem)
    def _sample_activated(self, item: QListWidgetItem) -> None:
        self.drop.handle_files([item.data(Qt.ItemDataRole.UserRole)])

    @Slot(object)
    def _on_rejected(self, messages: list[str]) -> None:
        text = "\n".join(messages)
        self.message.setText(f"<span style='color:#c0392b'>{text}</span>")
        self.window().show_error("Cannot use dropped file", text)

    @Slot(object)
    def predict_images(self, files: list[str]) -> None:
        models = [m for m in (self.model_a.currentData(), self.model_b.currentData()) if m]
        if not models:
            self.window().show_error("Inference", "no model loaded")
            return
        settings().setValue("inference/top_k", self.top_k.value())
        # A drop adds to the images already shown while the models and top-k stay the same.
        same = self.outcome is not None and self._models == tuple(models) and self._top_k == self.top_k.value()
        shown = set(self.outcome.inputs) if same else set()
        new = [f for f in dict.fromkeys(files) if f not in shown]
        if not new:
            self._select_input(files[-1])
            return
        self._models, self._top_k = tuple(models), self.top_k.value()
        self.message.setText(f"Predicting {len(new)} image(s) …")
        self.submit_job(
            PredictJob(tuple(models), tuple(new), None, self.top_k.value()),
            on_result=lambda o, keep=same: self._on_result(o, keep),
            on_failed=self._on_failed,
        )

    def clear_images(self) -> None:
        self.outcome = None
        self.images.clear()

    def _select_input(self, path: str) -> None:
        if self.outcome is not None and path in self.outcome.inputs:
            self.images.setCurrentRow(self.outcome.inputs.index(path))

    def _on_result(self, outcome: PredictOutcome, keep: bool = False) -> None:
        first_new = 0
        if keep and self.outcome is not None:
            first_new = len(self.outcome.inputs)
            outcome = merge_outcomes(self.outcome, outcome)
        self.outcome = outcome
        self.title_a.setText(f"<b>{outcome.models[0]}</b>")
        self.title_b.setText(f"<b>{outcome.models[-1]}</b>")
        self.images.blockSignals(True)
        self.images.clear()
        for p in outcome.inputs:
            self.images.addItem(Path(p).name)
        self.images.blockSignals(False)
        self.images.setCurrentRow(first_new)
        self._show_row(first_new)
        if len(outcome.models) > 1:
            agree = sum(preds[0][0].index == preds[1][0].index for preds in outcome.predictions)
            self.message.setText(f"Top-1 agreement between the two models: {agree}/{len(outcome.inputs)} image(s)")
        else:
            self.message.setText("")

    def _on_failed(self, message: str) -> None:
        self.message.setText(f"<span style='color:#c0392b'>{message}</span>")

    @Slot(int)
    def _show_row(self, row: int) -> None:
        if self.outcome is None or not (0 <= row < len(self.outcome.inputs)):
            return
        path = self.outcome.inputs[row]
        if row < len(self.outcome.thumbnails):  # decoded on the engine thread, never here
            self.preview.setPixmap(to_pixmap(self.outcome.thumbnails[row]))
        self.gradcam.request(self._models, path)
        preds = self.outcome.predictions[row]
        self.table_a.show_predictions(preds[0])
        self.table_b.show_predictions(preds[-1])


def merge_outcomes(old: PredictOutcome, new: PredictOutcome) -> PredictOutcome:
    """The images of ``old`` followed by those of ``new`` (same models, same top-k)."""
    import numpy as np

    return PredictOutcome(
        old.inputs + new.inputs,
        old.models,
        old.predictions + new.predictions,
        tuple(np.concatenate([a, b]) for a, b in zip(old.logits, new.logits, strict=True)),
        old.thumbnails + new.thumbnails,
    )
