"""The Quantize tab's choice of method (how codes are chosen) and its calibration images."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QSpinBox, QWidget

from engine import kinds
from engine.kinds.base import MethodOffer
from gui.state import settings


class MethodPicker(QWidget):
    """Method combo box, calibration data and its size, as the source model's kind offers them."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.method = QComboBox()
        self.calib = QLineEdit()
        self.calib_size = QSpinBox()
        self.calib_size.setRange(1, 100000)
        self.offer: MethodOffer | None = None
        self.offer_methods(kinds.get(kinds.IMAGE).methods())
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.method)
        row.addWidget(QLabel("calibration"))
        row.addWidget(self.calib, 1)
        row.addWidget(self.calib_size)
        self.method.currentTextChanged.connect(self._method_changed)

    def offer_methods(self, offer: MethodOffer) -> None:
        """Show ``offer``'s methods (the source's kind); a method both offers have stays chosen."""
        if offer == self.offer:
            return
        current = self.method.currentData()
        self.remember()  # each kind keeps its own calibration data (images vs a text file)
        self.calib.setText(str(settings().value(f"quantize/calib/{offer.calib_unit}", "")))
        self.method.blockSignals(True)
        self.method.clear()
        for name, text in offer.methods:
            self.method.addItem(name, name)
            self.method.setItemData(self.method.count() - 1, text, 3)  # Qt.ToolTipRole
        self.method.blockSignals(False)
        i = self.method.findData(current)
        self.method.setCurrentIndex(max(0, i))
        self.calib.setPlaceholderText(offer.calib_placeholder)
        self.calib.setToolTip(offer.calib_hint)
        self.calib_size.setMinimum(0 if offer.calib_size == 0 else 1)
        self.calib_size.setSpecialValueText("auto" if offer.calib_size == 0 else "")
        if self.offer is None or self.offer.calib_size != offer.calib_size:
            self.calib_size.setValue(offer.calib_size)
        self.calib_size.setSuffix(f" {offer.calib_unit}")
        tip = f"calibration {offer.calib_unit} to use; time grows about linearly with the count"
        self.calib_size.setToolTip(f"{tip}; {offer.auto_hint}" if offer.auto_hint else tip)
        self.offer = offer
        self._method_changed(self.method.currentText())

    @Slot(str)
    def _method_changed(self, name: str) -> None:
        calibrated = name != "rtn"
        self.calib.setEnabled(calibrated)
        self.calib_size.setEnabled(calibrated)

    def remember(self) -> None:
        """Keep the calibration data of the kind on show (QSettings, one entry per kind)."""
        if self.offer is not None:
            settings().setValue(f"quantize/calib/{self.offer.calib_unit}", self.calib.text())

    def job_kwargs(self) -> dict:
        """QuantizeJob's method, calib and calib_size fields."""
        return {
            "method": self.method.currentData(),
            "calib": self.calib.text().strip() or None,
            "calib_size": int(self.calib_size.value()) or None,  # 0 shows "auto": the method's default
        }
