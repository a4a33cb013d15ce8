"""Click through the default workflow in the main window, offscreen."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from engine.core import paths
from tests.helpers import read_rows

SAMPLES = paths.SAMPLES_DIR


def drop_files(widget, files):
    """Deliver drag-enter and drop events built by hand (Qt drops synthetic drops sent
    without a drag in progress); keep the QMimeData referenced while they are handled."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(QPoint(10, 10), *args)
    widget.dragEnterEvent(enter)
    assert enter.isAccepted()
    widget.dropEvent(QDropEvent(QPointF(10, 10), *args))
    return mime


def idle(window) -> bool:
    return not window.engine.busy() and window.router.pending() == 0


def test_startup_shows_the_default_model_card(window):
    t = window.models_tab
    assert t.layers.rowCount() == 11
    assert "default-small-cnn" in t.summary.text() and "95,274 parameters" in t.summary.text()
    names = [t.layers.row_at(i).name for i in range(t.layers.rowCount())]
    assert names[0] == "stem.conv" and names[-1] == "head"
    assert window.windowTitle() == "MLX Quant Studio"


def test_quantize_adds_a_variant_with_quantized_convolutions(qtbot, window):
    q = window.quantize_tab
    q.recipe.setCurrentText("int4")
    qtbot.mouseClick(q.run_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: q.variants.rowCount() == 1, timeout=20000)
    out = q.variants.row_at(0)
    assert out.recipe == "int4" and Path(out.path).is_dir()
    formats = {r.name: r.format for r in out.card.layers}
    # The depthwise layer may take a smaller group when that stores fewer bytes (per-layer layout).
    assert formats["conv4.conv"] == "int4/g64" and formats["dw.conv"] in ("int4/g64", "int4/g32")
    assert out.card.size_on_disk < 0.25 * out.source.size_on_disk
    qtbot.waitUntil(lambda: q.run_btn.isEnabled(), timeout=5000)
    assert any(e.recipe == "int4" for e in window.state.entries())
    # The inference tab compares against the new variant.
    assert window.inference_tab.model_b.currentData() == out.path


def test_benchmark_streams_live_plot_and_fills_tables(qtbot, window):
    b = window.benchmark_tab
    b.iters.setValue(15)
    b.warmup.setValue(1)
    qtbot.mouseClick(b.bench_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: b.table_model.rowCount() == 1 and idle(window), timeout=20000)
    series = b.latency_plot.names()
    assert len(series) == 1 and len(b.latency_plot.values(series[0])) == 15
    row = b.table_model.row_at(0)
    assert row["latency_p50_ms"] > 0 and row["size_on_disk_bytes"] > 0
    qtbot.mouseClick(b.eval_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "accuracy" in b.table_model.row_at(0) and idle(window), timeout=30000)
    assert b.table_model.row_at(0)["accuracy"] > 0.9
    window.results_tab.refresh()
    kinds = sorted(window.results_tab.model.row_at(i).kind for i in range(window.results_tab.model.rowCount()))
    assert kinds == ["benchmark", "evaluate"]


def test_dropping_an_image_shows_both_models_predictions(qtbot, window):
    window.quantize_tab.recipe.setCurrentText("int8")
    window.quantize_tab.start()
    qtbot.waitUntil(lambda: window.quantize_tab.variants.rowCount() == 1 and idle(window), timeout=20000)
    inf = window.inference_tab
    mime = drop_files(inf.drop, [SAMPLES / "digit_3.png", SAMPLES / "digit_8.png"])
    qtbot.waitUntil(lambda: inf.outcome is not None and idle(window), timeout=20000)
    assert inf.images.count() == 2
    assert inf.table_a.labels()[0] == "3" and inf.table_b.labels()[0] == "3"
    assert "int8" in inf.title_b.text()
    assert "agreement" in inf.message.text()
    del mime


def test_a_non_image_drop_is_a_clear_message_and_the_app_keeps_working(qtbot, window, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not a PNG")
    inf = window.inference_tab
    drop_files(inf.drop, [bad])
    assert window.last_error is not None and "notes.png" in window.last_error and "not an image" in window.last_error
    assert inf.outcome is None
    drop_files(inf.drop, [SAMPLES / "digit_5.png"])
    qtbot.waitUntil(lambda: inf.outcome is not None and idle(window), timeout=20000)
    assert inf.table_a.labels()[0] == "5"


def test_cancel_returns_to_idle_and_the_next_job_runs(qtbot, window):
    b = window.benchmark_tab
    b.iters.setValue(100000)
    b.warmup.setValue(0)
    b.start_benchmark()
    qtbot.waitUntil(
        lambda: len(b.latency_plot.names()) == 1 and len(b.latency_plot.values(b.latency_plot.names()[0])) > 3,
        timeout=20000,
    )
    assert b.cancel_btn.isEnabled() and not b.bench_btn.isEnabled()
    t0 = time.monotonic()
    qtbot.mouseClick(b.cancel_btn, Qt.MouseButton.LeftButton)
    # idle() reads the worker's state; the last 'finished' signal may still be queued.
    qtbot.waitUntil(lambda: idle(window) and b.bench_btn.isEnabled() and not window.progress.isVisible(), timeout=5000)
    assert time.monotonic() - t0 < 1.0
    assert window.status_label.text() in ("Cancelled", "Ready")
    b.iters.setValue(3)
    b.start_benchmark()
    qtbot.waitUntil(lambda: b.table_model.rowCount() == 1 and idle(window), timeout=20000)


def test_a_failing_job_shows_an_error_and_reenables_the_ui(qtbot, window, tmp_path):
    b = window.benchmark_tab
    b.data.setText(str(tmp_path / "no-such-dataset"))
    b.start_evaluate()
    qtbot.waitUntil(lambda: idle(window), timeout=10000)
    assert "dataset not found" in window.last_error
    assert b.eval_btn.isEnabled() and not b.cancel_btn.isEnabled()


def test_results_export_writes_raw_values(qtbot, window, tmp_path):
    window.benchmark_tab.start_evaluate()
    qtbot.waitUntil(lambda: idle(window) and window.results_tab.model.rowCount() == 1, timeout=30000)
    out = window.results_tab.export_summary(tmp_path / "export.csv")
    rows = list(read_rows(out))
    assert len(rows) == 1 and rows[0]["kind"] == "evaluate"
    acc = float(rows[0]["accuracy"])
    assert 0.9 < acc <= 1.0 and "%" not in rows[0]["accuracy"]
    long = window.results_tab.export_long(tmp_path / "long.csv")
    assert sum(1 for r in read_rows(long) if r["metric"] == "recall") == 10


def test_settings_and_geometry_are_remembered(qtbot, window):
    from gui.app import MainWindow

    window.benchmark_tab.iters.setValue(17)
    window.benchmark_tab._remember()
    window.resize(760, 560)  # inside the offscreen screen, so restoring does not clamp it
    window.tabs.setCurrentIndex(2)
    size = (window.width(), window.height())
    window.close()
    again = MainWindow()
    qtbot.addWidget(again)
    try:
        assert again.benchmark_tab.iters.value() == 17
        assert again.tabs.currentIndex() == 2
        # The offscreen screen is 800 px wide, so restoring clamps the width; the height shows the restore.
        assert again.height() == size[1]
    finally:
        again.close()
