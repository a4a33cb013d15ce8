"""The Evaluation tab and the Grad-CAM panel, clicked through offscreen with pytest-qt."""

from __future__ import annotations

import csv

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from engine.core.paths import SAMPLES_DIR, variants_dir
from engine.jobs.image import QuantizeJob
from engine.measure.results import ResultsStore
from engine.runtime import JobContext, Workspace

pytest.importorskip("pytestqt")


@pytest.fixture
def window(qtbot, isolated_data_dir):
    from gui.app import MainWindow

    QuantizeJob("default", "int4", str(variants_dir() / "default-small-cnn-int4"), store=False).run(
        JobContext(), Workspace(ResultsStore(isolated_data_dir / "scratch.db"))
    )
    w = MainWindow(ResultsStore(isolated_data_dir / "results.db"))
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    yield w
    w.close()


def _wait_idle(qtbot, busy, timeout=120_000):
    qtbot.waitUntil(lambda: not busy(), timeout=timeout)


def test_evaluation_tab_runs_shows_exports_and_reopens_stored_runs(window, qtbot, tmp_path):
    tab = window.evaluation_tab
    window.tabs.setCurrentWidget(tab)
    assert len(tab.models()) == 2  # the float model and its int4 variant, checked by default
    tab.limit.setValue(40)
    tab.batch.setValue(20)
    tab.bootstrap.setValue(20)
    tab.corruptions["gaussian_noise"].setChecked(True)
    tab.severities.setText("1,4")
    tab.use_op.setChecked(True)
    tab.val_data.setText("default-val")
    qtbot.mouseClick(tab.run_btn, Qt.MouseButton.LeftButton)
    assert tab.cancel_btn.isEnabled()
    _wait_idle(qtbot, tab.busy)
    assert tab.outcome is not None, tab.status.text()
    ref, var = (v.name for v in tab.outcome.variants)

    assert tab.summary.model.rowCount() == 2
    assert "[" in tab.summary.model.data(tab.summary.model.index(0, 3))  # accuracy with its interval
    # What each variant stores, so methods are compared at equal bits per weight.
    from engine.image.bundle import load_bundle
    from engine.image.model_card import model_card

    for row, v in zip(tab.summary.model.rows, tab.outcome.variants, strict=True):
        assert row["bits_per_weight"] == pytest.approx(model_card(load_bundle(v.path)).bits_per_weight)
    assert tab.summary.model.rows[1]["bits_per_weight"] < tab.summary.model.rows[0]["bits_per_weight"] / 4
    assert tab.per_class.model.rowCount() == 20
    tab.confusion.set_tables(tab.confusion.tables)
    assert tab.confusion.diff_panel.isVisibleTo(tab.confusion)
    diff = tab.confusion.diff_panel.model.matrix
    ref_cm = tab.confusion.ref_panel.model.matrix
    assert diff.shape == (10, 10) and ref_cm.sum() == 40 and diff.sum() == 0
    assert set(tab.robustness.plots) == {"gaussian_noise"}
    assert set(tab.reliability.curves()) == {ref, var}

    # Every view exports CSV and PNG.
    for name, view in (
        ("summary", tab.summary),
        ("per_class", tab.per_class),
        ("confusion", tab.confusion),
        ("reliability", tab.reliability),
        ("robustness", tab.robustness),
    ):
        assert view.export.export_csv(tmp_path / f"{name}.csv") is not None
        assert view.export.export_png(tmp_path / f"{name}.png") is not None
        assert Image.open(tmp_path / f"{name}.png").size[0] > 100
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["variant", "metric", "class", "value"] and len(rows) > 500
    with open(tmp_path / "confusion.csv", newline="") as f:
        assert {r[0] for r in list(csv.reader(f))[1:]} == {ref, var, f"{var} - {ref}"}

    # Stored runs reopen from the Results tab with the same numbers.
    results = window.results_tab
    results.refresh()
    assert results.model.rowCount() == 2
    results.table.selectAll()
    received = []
    results.open_evaluation.connect(received.append)
    accuracy_before = tab.summary.model.rows[1]["accuracy"]
    tab.summary.model.set_rows([])
    results._open_evaluation()
    assert received and window.tabs.currentWidget() is tab
    assert tab.summary.model.rowCount() == 2
    assert tab.summary.model.rows[1]["accuracy"] == pytest.approx(accuracy_before)
    assert tab.confusion.ref_panel.model.matrix.sum() == 40


def test_evaluation_can_be_cancelled_and_bad_settings_are_reported(window, qtbot):
    tab = window.evaluation_tab
    tab.limit.setValue(0)
    tab.batch.setValue(8)
    for cb in tab.corruptions.values():
        cb.setChecked(True)
    tab.severities.setText("1,2,3,4,5")
    tab.start()
    qtbot.waitUntil(lambda: "%" in tab.status.text(), timeout=60_000)
    tab.cancel()
    _wait_idle(qtbot, tab.busy, timeout=60_000)
    assert tab.outcome is None and tab.run_btn.isEnabled()
    assert window.engine.thread.isRunning()
    tab.severities.setText("9")
    tab.start()
    assert "1..5" in (window.last_error or "") and not tab.busy()


def test_gradcam_panel_shows_both_models_side_by_side(window, qtbot, tmp_path):
    inf = window.inference_tab
    window.tabs.setCurrentWidget(inf)
    inf.model_b.setCurrentIndex(inf.model_b.findData(str((variants_dir() / "default-small-cnn-int4").resolve())))
    panel = inf.gradcam
    panel.enabled.setChecked(True)
    inf.drop.handle_files([str(SAMPLES_DIR / "digit_3.png")])
    qtbot.waitUntil(lambda: panel.outcome is not None and panel._job is None, timeout=60_000)
    out = panel.outcome
    assert [m.recipe for m in out.maps] == ["fp32", "int4"]
    assert all(not p.pixmap().isNull() for p in panel.pictures)
    assert "correlation" in panel.info.text()
    assert panel.layer.count() == 1 + len(out.layers)
    # Choosing another layer and class recomputes on the engine thread.
    panel.layer.setCurrentText("pw")
    panel.cls.setCurrentIndex(1 + 8)
    panel._rerun()
    qtbot.waitUntil(lambda: panel._job is None and panel.outcome.maps[0].layer == "pw", timeout=60_000)
    assert panel.outcome.maps[1].class_name == "8"
    assert panel.save_png(tmp_path / "cam.png") is not None
