"""Grad-CAM side by side in the Inference tab: where the original and the quantized model look."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.image.gradcam import GradCamJob, GradCamOutcome
from engine.measure.report.gradcam_plot import diverging, overlay
from gui.router import JobRouter
from gui.state import settings
from gui.widgets.export import ask_save_path, save_widget_png
from gui.widgets.job_owner import JobOwner

SIDE = 160
AUTO = "(automatic)"


def to_pixmap(rgb: np.ndarray, side: int = SIDE) -> QPixmap:
    """(H, W, 3) uint8 -> a pixmap scaled to ``side`` (nearest, so small inputs stay crisp)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    img = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(img).scaled(
        side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
    )


class GradCamPanel(JobOwner, QGroupBox):
    """Overlays of each model's Grad-CAM and their difference, computed as a job on the engine thread."""

    def __init__(self, router: JobRouter, parent=None):
        super().__init__("Grad-CAM", parent)
        self.router = router
        self._request: tuple[tuple[str, ...], str] | None = None
        self.outcome: GradCamOutcome | None = None
        self.enabled = QCheckBox("Show where each model looks")
        self.enabled.setChecked(str(settings().value("inference/gradcam", "true")) == "true")
        self.enabled.toggled.connect(self._toggled)
        self.layer = QComboBox()
        self.layer.addItem(AUTO)
        self.layer.setToolTip("the feature map Grad-CAM reads; automatic is the last one")
        self.layer.activated.connect(self._rerun)
        self.cls = QComboBox()
        self.cls.addItem(AUTO)
        self.cls.setToolTip("the class to explain; automatic is the original model's top-1")
        self.cls.activated.connect(self._rerun)
        self.save_btn = QPushButton("Save PNG…")
        self.save_btn.clicked.connect(lambda: self.save_png())
        bar = QHBoxLayout()
        bar.addWidget(self.enabled)
        bar.addWidget(QLabel("Layer"))
        bar.addWidget(self.layer, 1)
        bar.addWidget(QLabel("Class"))
        bar.addWidget(self.cls, 1)
        bar.addWidget(self.save_btn)

        self.images = QWidget()
        grid = QGridLayout(self.images)
        grid.setContentsMargins(0, 0, 0, 0)
        self.titles = [QLabel("original"), QLabel("quantized"), QLabel("difference")]
        self.pictures = [QLabel() for _ in range(3)]
        for i, (t, pic) in enumerate(zip(self.titles, self.pictures, strict=True)):
            t.setAlignment(Qt.AlignmentFlag.AlignCenter)
            t.setWordWrap(True)
            pic.setFixedSize(SIDE, SIDE)
            pic.setAlignment(Qt.AlignmentFlag.AlignCenter)
            pic.setStyleSheet("QLabel { background: #222; }")
            grid.addWidget(t, 0, i)
            grid.addWidget(pic, 1, i)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        grid.addWidget(self.info, 2, 0, 1, 3)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.images)
        self._toggled(self.enabled.isChecked())

    # -- requests ------------------------------------------------------------------------
    def request(self, models: tuple[str, ...], image: str) -> None:
        """Explain ``image`` under ``models`` (reference first) when the panel is enabled."""
        self._request = (tuple(models), image)
        if self.enabled.isChecked():
            self._submit()

    def _submit(self) -> None:
        if self._request is None or not self._request[0]:
            return
        models, image = self._request
        layer = None if self.layer.currentText() == AUTO else self.layer.currentText()
        cls = None if self.cls.currentIndex() <= 0 else self.cls.currentIndex() - 1
        self.info.setText("Computing Grad-CAM …")
        self.submit_job(GradCamJob(models, image, cls, layer), on_result=self._on_result, on_failed=self._on_failed)

    @Slot(bool)
    def _toggled(self, on: bool) -> None:
        settings().setValue("inference/gradcam", "true" if on else "false")
        self.images.setVisible(on)
        for w in (self.layer, self.cls, self.save_btn):
            w.setEnabled(on)
        if on and self.outcome is None:
            self._submit()

    @Slot()
    def _rerun(self) -> None:
        if self.enabled.isChecked():
            self._submit()

    # -- results ---------------------------------------------------------------------------
    def _fill_combo(self, combo: QComboBox, items: tuple[str, ...]) -> None:
        if [combo.itemText(i) for i in range(1, combo.count())] == list(items):
            return
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(AUTO)
        combo.addItems(list(items))
        combo.setCurrentIndex(max(0, combo.findText(current)))
        combo.blockSignals(False)

    def _on_result(self, out: GradCamOutcome) -> None:
        self.outcome = out
        self._fill_combo(self.layer, out.layers)
        self._fill_combo(self.cls, out.labels)
        maps = out.maps
        for i, m in enumerate(maps[:2]):
            self.titles[i].setText(
                f"<b>{m.model}</b> [{m.recipe}]<br>p({m.class_name}) {100 * m.class_probability:.1f}%, "
                f"top-1 {m.top1_label}"
            )
            self.pictures[i].setPixmap(to_pixmap(overlay(m.image, m.heatmap)))
        two = len(maps) > 1
        for w in (self.titles[1], self.pictures[1], self.titles[2], self.pictures[2]):
            w.setVisible(two)
        if two:
            diff = maps[1].heatmap - maps[0].heatmap
            peak = float(np.abs(diff).max())
            # Scaled to its own peak so small shifts show; the title gives the scale.
            self.titles[2].setText(
                f"<b>{maps[1].recipe} − {maps[0].recipe}</b><br>red: more attention (full colour = {peak:.2f})"
            )
            self.pictures[2].setPixmap(to_pixmap(diverging(diff / peak if peak > 0 else diff)))
            self.info.setText(
                f"Layer {maps[0].layer}, class '{maps[0].class_name}': correlation of the two maps "
                f"{out.correlation[1]:.3f}, overlap of their top 20 % {100 * out.top_iou[1]:.0f} %."
            )
        else:
            self.info.setText(f"Layer {maps[0].layer}, class '{maps[0].class_name}'.")

    def _on_failed(self, message: str) -> None:
        self.info.setText(f"<span style='color:#c0392b'>{message}</span>")

    def save_png(self, path=None):
        target = path or ask_save_path(self, "Save Grad-CAM", "gradcam.png", "PNG (*.png)")
        if target is None:
            return None
        try:
            return save_widget_png(self.images, target)
        except OSError as exc:
            self.window().show_error("Export failed", f"{target}: {exc.strerror or exc}")
            return None
