"""The Quantize tab's analysis panels clicked through on the real engine thread."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PySide6.QtCore import Qt

pytest.importorskip("pytestqt")


@pytest.fixture
def quantize_tab(qtbot):
    from gui.app import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    tab = w.quantize_tab
    qtbot.waitUntil(lambda: tab.source.count() > 0, timeout=20000)
    w.tabs.setCurrentWidget(tab)
    yield w, tab
    w.close()
    assert w.engine.thread.isFinished()


def test_sensitivity_bars_csv_and_autoquant_variant(quantize_tab, qtbot, tmp_path):
    w, tab = quantize_tab
    panel = tab.sensitivity
    tab.tools.setCurrentWidget(panel)
    panel.formats.setText("int2,int8")
    panel.calib.setValue(16)
    qtbot.mouseClick(panel.run_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.export_btn.isEnabled(), timeout=60000)
    report = panel.report
    bars = panel.bars()
    assert set(bars) == {"int2", "int8"}
    names, heights = bars["int2"]
    assert names == [layer.path for layer in report.layers]
    np.testing.assert_allclose(heights, [report.row(n, "int2").kl for n in names])
    panel.metric.setCurrentIndex(1)
    np.testing.assert_allclose(panel.bars()["int8"][1], [100 * report.row(n, "int8").flip_rate for n in names])
    w.grab().save(str(tmp_path / "sensitivity.png"))
    out = tmp_path / "s.csv"
    panel.export_csv(str(out))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(report.layers)

    aq = tab.autoquant
    tab.tools.setCurrentWidget(aq)
    aq.kind.setCurrentIndex(aq.kind.findData("bpw"))
    aq.value.setValue(3.5)
    aq.calib.setValue(16)
    with qtbot.waitSignal(tab.variant_created, timeout=60000) as blocker:
        qtbot.mouseClick(aq.run_btn, Qt.LeftButton)
    assert "auto-bpw3.5" in blocker.args[0]
    assert "chosen" in aq.trace.toPlainText() and "met" in aq.status.text()
    qtbot.waitUntil(lambda: aq.run_btn.isEnabled(), timeout=5000)


def test_recovery_runs_live_and_cancels(quantize_tab, qtbot):
    w, tab = quantize_tab
    panel = tab.recovery
    tab.tools.setCurrentWidget(panel)
    panel.epochs.setValue(50)  # long enough that only cancel ends it
    qtbot.mouseClick(panel.run_btn, Qt.LeftButton)
    assert tab.busy()
    qtbot.waitUntil(lambda: len(panel.loss_plot.values("loss")) >= 2, timeout=60000)
    assert np.all(np.isfinite(panel.loss_plot.values("loss")))
    qtbot.mouseClick(panel.cancel_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.run_btn.isEnabled(), timeout=30000)
    assert panel.status.text() == "cancelled" and not tab.busy()


def test_recovery_starts_from_a_quantized_model_and_keeps_its_grid(quantize_tab, qtbot, tmp_path):
    from engine.image.bundle import load_bundle
    from engine.image.quant.apply import quantize_model
    from engine.image.quant.recipes import resolve_recipe

    w, tab = quantize_tab
    b = load_bundle("default")
    q = b.clone()
    q.quantization = quantize_model(q.model, resolve_recipe("int4"), input_shape=b.input_shape())
    q.name, q.source = "default-int4", {"kind": "quantized", "parent": str(b.path), "method": "rtn"}
    q.save(tmp_path / "q")
    entry = w.state.add(tmp_path / "q")
    panel = tab.recovery
    tab.tools.setCurrentWidget(panel)
    i = panel.start_from.findData(entry.path)
    assert i > 0 and panel.recipe.isEnabled()  # the state's quantized image models are offered
    panel.start_from.setCurrentIndex(i)
    assert not panel.recipe.isEnabled()  # a quantized start keeps its own recipe
    rng = np.random.default_rng(0)
    data = tmp_path / "small.npz"
    np.savez(data, images=rng.integers(0, 255, (40, 28, 28), dtype=np.uint8), labels=np.arange(40) % 10)
    panel.data.setText(str(data))
    panel.epochs.setValue(1)
    with qtbot.waitSignal(tab.variant_created, timeout=60000) as blocker:
        qtbot.mouseClick(panel.run_btn, Qt.LeftButton)
    ft = load_bundle(blocker.args[0])
    assert ft.source["from_quantized"]["method"] == "rtn" and ft.source["teacher"] == str(b.path)
    assert ft.quantization["layers"] == q.quantization["layers"]
    np.testing.assert_array_equal(np.array(ft.model.head.scales), np.array(q.model.head.scales))
    assert "its grid kept" in panel.status.text()


def test_autoquant_methods_choice_runs_and_is_remembered(quantize_tab, qtbot):
    import json
    from pathlib import Path

    from gui.tabs.quantize_tools import AutoquantPanel

    w, tab = quantize_tab
    aq = tab.autoquant
    tab.tools.setCurrentWidget(aq)
    assert aq.chosen_methods() == ("rtn",)  # the default: today's search
    aq.methods["gptq+bc"].setChecked(True)
    aq.kind.setCurrentIndex(aq.kind.findData("bpw"))
    aq.value.setValue(4.0)
    aq.candidates.setText("int3,int4,int8")
    aq.calib.setValue(16)
    with qtbot.waitSignal(tab.variant_created, timeout=120000) as blocker:
        qtbot.mouseClick(aq.run_btn, Qt.LeftButton)
    cfg = json.loads((Path(blocker.args[0]) / "config.json").read_text())
    layers = cfg["quantization"]["method"]["layers"]
    assert set(layers.values()) <= {"rtn", "gptq+bc"}
    text = aq.trace.toPlainText()
    assert all(m in text for m in layers.values())  # each layer's method is listed
    qtbot.waitUntil(lambda: aq.run_btn.isEnabled(), timeout=5000)
    # Remembered (QSettings) by a panel made afterwards.
    again = AutoquantPanel(w.state, w.router, lambda: None)
    assert again.chosen_methods() == ("rtn", "gptq+bc")
    again.deleteLater()
