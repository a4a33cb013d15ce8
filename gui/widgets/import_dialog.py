"""The Import Checkpoint dialog: file, architecture, classes, labels and preprocessing."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from engine.core.errors import UserError
from engine.image.data.presets import PRESETS, read_labels
from engine.image.importers.dispatch import IMPORTABLE_SUFFIXES, check_importable, file_kind
from engine.image.models import registry
from engine.jobs.image import ImportJob
from gui.dialogs import last_folder, open_file
from gui.state import settings

FROM_FILE = "from the file (Keras / ONNX)"
MODEL_DEFAULT = "model default"
FILE_FILTER = "Models ({});;All files (*)".format(" ".join(f"*{s}" for s in IMPORTABLE_SUFFIXES))


def _row(*widgets) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    return w


class ImportDialog(QDialog):
    """Collects an ImportJob's settings; validates them before it closes."""

    def __init__(self, parent=None, path: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import Checkpoint")
        self.setMinimumWidth(560)
        s = settings()
        form = QFormLayout(self)
        self.weights = QLineEdit()
        self.weights.setPlaceholderText(" ".join(IMPORTABLE_SUFFIXES))
        self.weights.textChanged.connect(self._file_changed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.arch = QComboBox()
        self.arch.addItem(FROM_FILE)
        self.arch.addItems([n for n in registry.names() if n != "graph"])
        self.arch.setToolTip("State dicts (.safetensors/.pth) hold no architecture: choose one")
        last_arch = str(s.value("import/arch", "resnet18"))
        if self.arch.findText(last_arch) >= 0:
            self.arch.setCurrentText(last_arch)
        self.num_classes = QSpinBox()
        self.num_classes.setRange(0, 100000)
        self.num_classes.setSpecialValueText("from the checkpoint")
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("cat, dog, … or a labels file (optional)")
        labels_file = QPushButton("From File…")
        labels_file.clicked.connect(self._browse_labels)
        self.input_size = QLineEdit()
        self.input_size.setPlaceholderText("model default (e.g. 224 or 256x192)")
        self.preset = QComboBox()
        self.preset.addItems([MODEL_DEFAULT, *PRESETS])
        self.preset.setToolTip(
            "imagenet: [0,1] then ImageNet mean/std · inception: [-1,1] · unit: [0,1] · raw: [0,255] · "
            "caffe: BGR, [0,255] minus ImageNet means"
        )
        self.overrides = QLineEdit()
        self.overrides.setPlaceholderText("overrides, e.g. resize=stretch,interpolation=bicubic,crop=0.9")
        self.name = QLineEdit()
        self.name.setPlaceholderText("bundle name (default: the file name)")
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        form.addRow("File", _row(self.weights, browse))
        form.addRow("Architecture", self.arch)
        form.addRow("Classes", self.num_classes)
        form.addRow("Labels", _row(self.labels, labels_file))
        form.addRow("Input size", self.input_size)
        form.addRow("Preprocessing", _row(self.preset, self.overrides))
        form.addRow("Name", self.name)
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        if path:
            self.weights.setText(path)

    @Slot()
    def _browse(self) -> None:
        path = open_file(self, "Model file", "checkpoints", FILE_FILTER)
        if path:
            self.weights.setText(path)

    @Slot()
    def _browse_labels(self) -> None:
        start = last_folder("checkpoints")
        path, _ = QFileDialog.getOpenFileName(self, "Labels file", start, "Labels (*.txt *.json);;All files (*)")
        if path:
            self.labels.setText(path)

    @Slot(str)
    def _file_changed(self, text: str) -> None:
        try:
            kind = file_kind(text.strip()) if text.strip() else None
        except UserError:
            kind = None
        graph = kind in ("keras", "onnx")
        if graph:
            self.arch.setCurrentText(FROM_FILE)
        elif self.arch.currentText() == FROM_FILE:
            self.arch.setCurrentText(str(settings().value("import/arch", "resnet18")))
        # A Keras .h5 may also be read by layer names into a built-in architecture (xception).
        self.arch.setEnabled(not graph or text.strip().lower().endswith((".h5", ".hdf5")))

    def preprocess_spec(self) -> str | None:
        parts = [] if self.preset.currentText() == MODEL_DEFAULT else [self.preset.currentText()]
        parts += [p.strip() for p in self.overrides.text().split(",") if p.strip()]
        return ",".join(parts) or None

    def validate(self) -> str | None:
        """None if the settings can be submitted, else what is wrong."""
        path = self.weights.text().strip()
        if not path:
            return "Choose a file to import."
        problem = check_importable(path)
        if problem:
            return problem
        if file_kind(path) == "state_dict" and self.arch.currentText() == FROM_FILE:
            return "A state dict holds no architecture: choose one."
        try:
            read_labels(self.labels.text().strip() or None)
            from engine.image.data.preprocess import Preprocessing
            from engine.image.data.presets import apply_spec

            apply_spec(Preprocessing(), self.preprocess_spec(), self.input_size.text().strip() or None)
        except UserError as exc:
            return str(exc)
        return None

    def accept(self) -> None:
        problem = self.validate()
        if problem:
            self.error.setText(problem)
            return
        if self.arch.currentText() != FROM_FILE:
            settings().setValue("import/arch", self.arch.currentText())
        super().accept()

    def job(self, out_dir: Path) -> ImportJob:
        labels = read_labels(self.labels.text().strip() or None)
        path = self.weights.text().strip()
        name = self.name.text().strip() or Path(path).stem
        arch = None if self.arch.currentText() == FROM_FILE else self.arch.currentText()
        return ImportJob(
            arch=arch,
            weights=path,
            out=str(out_dir / name),
            num_classes=self.num_classes.value() or None,
            labels=tuple(labels) if labels else None,
            name=name,
            preprocess=self.preprocess_spec(),
            input_size=self.input_size.text().strip() or None,
        )
