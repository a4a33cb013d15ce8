"""The Quantize tab's choice of method (how codes are chosen) and its calibration images."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QSpinBox, QWidget

from engine.image.quant.calibration import DEFAULT_CALIBRATION
from engine.image.quant.methods import DEFAULT_CALIB_SIZE, METHODS


class MethodPicker(QWidget):
    """Method combo box, calibration data (any folder or .npz of images) and the number of images."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.method = QComboBox()
        for name, text in METHODS.items():
            self.method.addItem(name, name)
            self.method.setItemData(self.method.count() - 1, text, 3)  # Qt.ToolTipRole
        self.calib = QLineEdit()
        self.calib.setPlaceholderText(DEFAULT_CALIBRATION)
        self.calib.setToolTip("calibration images: any folder or .npz of images (labels optional) or a dataset name")
        self.calib_size = QSpinBox()
        self.calib_size.setRange(1, 100000)
        self.calib_size.setValue(DEFAULT_CALIB_SIZE)
        self.calib_size.setToolTip("calibration images to use; time grows about linearly with the count")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.method)
        row.addWidget(QLabel("calibration"))
        row.addWidget(self.calib, 1)
        row.addWidget(self.calib_size)
        self.method.currentTextChanged.connect(self._method_changed)
        self._method_changed(self.method.currentText())

    @Slot(str)
    def _method_changed(self, name: str) -> None:
        calibrated = name != "rtn"
        self.calib.setEnabled(calibrated)
        self.calib_size.setEnabled(calibrated)

    def job_kwargs(self) -> dict:
        """QuantizeJob's method, calib and calib_size fields."""
        return {
            "method": self.method.currentData(),
            "calib": self.calib.text().strip() or None,
            "calib_size": int(self.calib_size.value()),
        }
