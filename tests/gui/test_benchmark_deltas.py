"""The Benchmark tab's session table appends a row per run and compares each variant with its float
parent: accuracy in points, p50 speed-up, size (issue 15)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from gui.widgets.table_model import BETTER, WORSE


def idle(window) -> bool:
    return not window.engine.busy()


def test_variant_rows_lead_with_deltas_to_the_parent(qtbot, window):
    q = window.quantize_tab
    q.recipe.setCurrentText("int4")
    q.start()
    qtbot.waitUntil(lambda: q.variants.rowCount() == 1 and idle(window), timeout=30000)
    variant = q.variants.row_at(0).path
    b = window.benchmark_tab
    b.iters.setValue(10)
    b.warmup.setValue(1)
    for path in (str(window.state.entries("image")[0].path), variant):
        i = b.model.findData(path)
        assert i >= 0, path
        b.model.setCurrentIndex(i)
        b.start_benchmark()
        qtbot.waitUntil(lambda: idle(window) and not b.busy(), timeout=30000)
        b.start_evaluate()
        qtbot.waitUntil(lambda: idle(window) and not b.busy(), timeout=60000)
    rows = [b.table_model.row_at(i) for i in range(b.table_model.rowCount())]
    assert len(rows) == 2, "benchmark and evaluation of one model share a row"
    parent, child = rows
    assert child["size_ratio"] == pytest.approx(child["size_on_disk_bytes"] / parent["size_on_disk_bytes"])
    assert child["size_ratio"] < 0.3
    assert child["speedup_p50"] == pytest.approx(parent["latency_p50_ms"] / child["latency_p50_ms"])
    assert child["d_accuracy_pt"] == pytest.approx(100 * (child["accuracy"] - parent["accuracy"]))
    col = next(i for i, c in enumerate(b.table_model.columns) if c.header == "size vs float")
    assert b.table_model.data(b.table_model.index(1, col), Qt.ItemDataRole.ForegroundRole) == BETTER
    # A second benchmark of the variant is a new row, not an overwrite.
    b.start_benchmark()
    qtbot.waitUntil(lambda: idle(window) and not b.busy() and b.table_model.rowCount() == 3, timeout=30000)
    if b.table_model.row_at(2)["speedup_p50"] < 1:
        assert "slower than its float parent" in b.status.text()
        col = next(i for i, c in enumerate(b.table_model.columns) if c.header == "p50 speed-up")
        assert b.table_model.data(b.table_model.index(2, col), Qt.ItemDataRole.ForegroundRole) == WORSE


def test_runs_overlay_in_the_live_plots_until_cleared(qtbot, window):
    b = window.benchmark_tab
    b.iters.setValue(5)
    b.warmup.setValue(0)
    for _ in range(2):
        b.start_benchmark()
        qtbot.waitUntil(lambda: idle(window) and not b.busy(), timeout=30000)
    qtbot.waitUntil(lambda: len(b.latency_plot.names()) == 2, timeout=5000)
    first, second = b.latency_plot.names()
    assert second == f"{first} #2" and len(b.latency_plot.values(second)) == 5
    b._clear_live_plots()
    assert b.latency_plot.names() == []
