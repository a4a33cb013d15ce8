"""The Quantize tab's method picker: a calibrated variant made on the real engine thread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

pytest.importorskip("pytestqt")


def test_method_picker_makes_a_gptq_variant(qtbot, tmp_path):
    from gui.app import MainWindow

    np.savez(tmp_path / "calib.npz", images=np.random.default_rng(0).integers(0, 255, (16, 28, 28), dtype=np.uint8))
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    tab = w.quantize_tab
    qtbot.waitUntil(lambda: tab.source.count() > 0, timeout=20000)
    w.tabs.setCurrentWidget(tab)
    assert not tab.method.calib.isEnabled()  # rtn needs no calibration
    tab.recipe.setCurrentText("int4")
    tab.method.method.setCurrentText("gptq")
    assert tab.method.calib.isEnabled()
    tab.method.calib.setText(str(tmp_path / "calib.npz"))
    tab.method.calib_size.setValue(8)
    qtbot.mouseClick(tab.run_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: tab.variants.rowCount() == 1 and tab.run_btn.isEnabled(), timeout=120000)
    cfg = json.loads((Path(tab.actsim.variant) / "config.json").read_text())  # the new variant's folder
    assert cfg["quantization"]["method"]["name"] == "gptq"
    assert cfg["quantization"]["method"]["calibration_size"] == 8
    w.close()
    assert w.engine.thread.isFinished()
