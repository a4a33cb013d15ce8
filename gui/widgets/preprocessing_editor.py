"""Edit a bundle's preprocessing and class labels (saved back by an engine job)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
)

from engine.core.errors import UserError
from engine.image.data.preprocess import INTERPOLATION, RESIZE_POLICIES, SCALINGS, Preprocessing
from engine.image.data.presets import PRESETS, apply_spec, describe

SCALE_TEXT = {"unit": "[0, 1]", "symmetric": "[-1, 1]", "raw": "[0, 255]"}


def _floats_text(v) -> str:
    return "" if v is None else ", ".join(f"{x:g}" for x in v)


class PreprocessingEditor(QDialog):
    """Fields for every Preprocessing attribute plus the labels; ``result_values()`` after accept."""

    def __init__(self, prep: Preprocessing, labels: list[str], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Preprocessing and Labels")
        self.setMinimumWidth(480)
        self._n_labels = len(labels)
        form = QFormLayout(self)
        self.preset = QComboBox()
        self.preset.addItems(["apply a preset…", *PRESETS])
        self.preset.activated.connect(self._apply_preset)
        self.height, self.width = QSpinBox(), QSpinBox()
        for box in (self.height, self.width):
            box.setRange(1, 8192)
        self.channels = QComboBox()
        self.channels.addItems(["1", "3"])
        self.order = QComboBox()
        self.order.addItems(["RGB", "BGR"])
        self.resize = QComboBox()
        self.resize.addItems(list(RESIZE_POLICIES))
        self.crop = QDoubleSpinBox()
        self.crop.setRange(0.05, 1.0)
        self.crop.setSingleStep(0.005)
        self.crop.setDecimals(3)
        self.interpolation = QComboBox()
        self.interpolation.addItems(list(INTERPOLATION))
        self.scale = QComboBox()
        for key in SCALINGS:
            self.scale.addItem(SCALE_TEXT[key], key)
        self.mean, self.std = QLineEdit(), QLineEdit()
        self.mean.setPlaceholderText("none, or 0.485, 0.456, 0.406")
        self.std.setPlaceholderText("none, or 0.229, 0.224, 0.225")
        self.labels = QPlainTextEdit()
        self.labels.setPlaceholderText("one class name per line")
        self.summary = QLabel()
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        form.addRow("Preset", self.preset)
        form.addRow("Height", self.height)
        form.addRow("Width", self.width)
        form.addRow("Channels", self.channels)
        form.addRow("Channel order", self.order)
        form.addRow("Resize", self.resize)
        form.addRow("Crop fraction", self.crop)
        form.addRow("Interpolation", self.interpolation)
        form.addRow("Scaling", self.scale)
        form.addRow("Mean", self.mean)
        form.addRow("Std", self.std)
        form.addRow(f"Labels ({len(labels)})", self.labels)
        form.addRow(self.summary)
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.set_values(prep)
        self.labels.setPlainText("\n".join(labels))
        self._value: tuple[Preprocessing, tuple[str, ...]] | None = None

    def set_values(self, p: Preprocessing) -> None:
        self.height.setValue(p.input_size[0])
        self.width.setValue(p.input_size[1])
        self.channels.setCurrentText(str(p.channels))
        self.order.setCurrentText(p.channel_order)
        self.resize.setCurrentText(p.resize)
        self.crop.setValue(p.crop_fraction)
        self.interpolation.setCurrentText(p.interpolation)
        self.scale.setCurrentIndex(self.scale.findData(p.scale))
        self.mean.setText(_floats_text(p.mean))
        self.std.setText(_floats_text(p.std))
        self.summary.setText(describe(p))

    def _apply_preset(self, index: int) -> None:
        if index <= 0:
            return
        try:
            self.set_values(apply_spec(self.preprocessing(), self.preset.currentText()))
        except UserError as exc:
            self.error.setText(str(exc))
        self.preset.setCurrentIndex(0)

    @staticmethod
    def _parse(text: str, what: str) -> tuple[float, ...] | None:
        text = text.strip()
        if not text or text.lower() == "none":
            return None
        try:
            return tuple(float(v) for v in text.replace("/", ",").split(","))
        except ValueError:
            raise UserError(f"{what} must be numbers separated by commas") from None

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(
            input_size=(self.height.value(), self.width.value()),
            channels=int(self.channels.currentText()),
            channel_order=self.order.currentText(),
            resize=self.resize.currentText(),
            crop_fraction=self.crop.value(),
            interpolation=self.interpolation.currentText(),
            scale=self.scale.currentData(),
            mean=self._parse(self.mean.text(), "mean"),
            std=self._parse(self.std.text(), "std"),
        )

    def accept(self) -> None:
        try:
            prep = self.preprocessing()
        except UserError as exc:
            self.error.setText(str(exc))
            return
        labels = tuple(s.strip() for s in self.labels.toPlainText().splitlines() if s.strip())
        if len(labels) != self._n_labels:
            self.error.setText(f"{len(labels)} labels for a model with {self._n_labels} classes")
            return
        self._value = (prep, labels)
        super().accept()

    def result_values(self) -> tuple[Preprocessing, tuple[str, ...]] | None:
        return self._value
