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


def test_language_model_gets_mlx_lm_methods_with_text_calibration(window, qtbot, tmp_path):
    """The method choice follows the source's kind: an LM is offered mlx-lm's GPTQ/AWQ/DWQ on a text file."""
    from engine.core.paths import DEFAULT_LM_DIR, DEFAULT_MODEL_DIR

    tab = window.quantize_tab
    window.tabs.setCurrentWidget(tab)

    def offered():
        return [tab.method.method.itemText(i) for i in range(tab.method.method.count())]

    tab.set_source(str(DEFAULT_MODEL_DIR.resolve()))
    assert offered() == ["rtn", "gptq", "gptq+bc", "adaround", "adaround+bc"]
    assert tab.method.calib_size.value() == 128 and tab.method.calib_size.suffix() == " images"
    tab.method.method.setCurrentText("gptq")
    tab.set_source(str(DEFAULT_LM_DIR.resolve()))
    assert offered() == ["rtn", "gptq", "awq", "dwq"]
    assert tab.method.method.currentText() == "gptq", "a method both kinds have stays chosen"
    assert tab.method.calib_size.value() == 0 and tab.method.calib_size.text() == "auto"  # the method decides
    assert tab.method.job_kwargs()["calib_size"] is None
    assert "text" in tab.method.calib.placeholderText()

    tab.recipe.setCurrentText("int4")
    qtbot.mouseClick(tab.run_btn, Qt.LeftButton)  # no text given: one message, nothing runs
    assert "needs calibration text" in window.last_error and tab.run_btn.isEnabled()
    tab.recipe.setCurrentText("mixed_3_6")
    tab.method.calib.setText(str(tmp_path / "notes.txt"))
    qtbot.mouseClick(tab.run_btn, Qt.LeftButton)
    assert "takes an integer recipe" in window.last_error

    words = (Path(__file__).parents[2] / "resources" / "data" / "moby_dick_heldout.txt").read_text().split()
    (tmp_path / "notes.txt").write_text(" ".join(words[:3000]), encoding="utf-8")
    tab.recipe.setCurrentText("int4")
    tab.method.calib_size.setValue(4)
    qtbot.mouseClick(tab.run_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: tab.variants.rowCount() == 1 and tab.run_btn.isEnabled(), timeout=120000)
    variant = Path(tab.variants.row_at(0).path)
    cfg = json.loads((variant / "config.json").read_text())
    assert (cfg["mqs"]["method"], cfg["mqs"]["calibration"], cfg["mqs"]["calibration_samples"]) == (
        "gptq",
        "notes.txt",
        4,
    )
    assert cfg["quantization"]["bits"] == 4
    assert window.state.entry(str(variant.resolve())) is not None, "the variant is listed"


def test_each_kind_keeps_its_own_calibration_data(window):
    from engine.core.paths import DEFAULT_LM_DIR, DEFAULT_MODEL_DIR
    from gui.tabs.method_picker import MethodPicker

    tab = window.quantize_tab
    tab.set_source(str(DEFAULT_MODEL_DIR.resolve()))
    tab.method.calib.setText("/data/dermoscopy")
    tab.set_source(str(DEFAULT_LM_DIR.resolve()))
    assert tab.method.calib.text() == ""  # a folder of images is no calibration text
    tab.method.calib.setText("/data/notes.txt")
    tab.set_source(str(DEFAULT_MODEL_DIR.resolve()))
    assert tab.method.calib.text() == "/data/dermoscopy"
    again = MethodPicker()  # remembered across sessions (QSettings)
    assert again.calib.text() == "/data/dermoscopy"
    again.deleteLater()
