"""Benchmark tab: live plots and cancel, a recipe sweep filling its table, batch sweeps, Pareto hover, plot export."""

from __future__ import annotations

import csv
import time
import xml.dom.minidom
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest

from engine.image.benchmark import BenchmarkSettings, run_benchmark
from engine.measure.results import ResultsStore
from gui.engine_thread import PARTIAL_INTERVAL_S, Engine
from gui.router import JobRouter
from gui.state import AppState
from gui.tabs.benchmark import BenchmarkTab
from gui.widgets.plot_export import export_plot


@pytest.fixture
def tab(qtbot):
    store = ResultsStore()
    engine = Engine(store)
    router = JobRouter(engine)
    state = AppState()
    tab = BenchmarkTab(state, router)
    qtbot.addWidget(tab)
    state.scan()
    tab.resize(1300, 900)
    tab.show()
    tab.iters.setValue(3)
    tab.warmup.setValue(0)
    tab.store = store
    yield tab
    assert engine.shutdown(), "the engine thread did not stop"
    for _, plot in tab.live_plots():
        plot.stop()


def summary_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_live_benchmark_partials_are_throttled_and_all_arrive(tab, qtbot, monkeypatch):
    deliveries = []
    real = tab._on_samples
    monkeypatch.setattr(tab, "_on_samples", lambda payloads: (deliveries.append(len(payloads)), real(payloads)))
    tab.iters.setValue(300)
    t0 = time.monotonic()
    tab.bench_btn.click()
    qtbot.waitUntil(lambda: not tab.busy(), timeout=60_000)
    elapsed = time.monotonic() - t0
    assert sum(deliveries) == 300  # every iteration reached the plot
    assert len(deliveries) <= elapsed / PARTIAL_INTERVAL_S + 2  # at most ~10 deliveries a second
    qtbot.wait(80)  # one redraw tick of the plot's timer
    (name,) = tab.latency_plot.names()
    assert len(tab.latency_plot.values(name)) == 300
    # MLX's active memory and the process RSS each on its own axis: RSS holds MLX's buffers and far more.
    assert tab.memory_plot.names() == [name] and tab.rss_plot.names() == [name]
    mlx, rss = tab.memory_plot.values(name), tab.rss_plot.values(name)
    assert len(mlx) == len(rss) == 300
    assert (mlx > 0).all() and (rss > 10 * mlx).all()


@dataclass(frozen=True)
class _CountingBenchmark:
    """A benchmark that notes how many iterations finished after the cancel flag was set."""

    after_cancel: list
    title: str = "Counting benchmark"

    def run(self, ctx, ws):
        def on_sample(sample):
            ctx.partial(sample)
            if ctx.should_stop():
                self.after_cancel.append(sample.index)

        run_benchmark(
            ws.bundle("default"), BenchmarkSettings(iters=1_000_000, warmup=0), None, on_sample, None, ctx.should_stop
        )


def test_cancel_stops_a_live_benchmark_within_one_iteration(tab, qtbot):
    after_cancel, got = [], []
    cancelled = []
    tab.router.job_cancelled.connect(cancelled.append)
    jid = tab.router.submit(_CountingBenchmark(after_cancel), on_partial=got.append)
    qtbot.waitUntil(lambda: len(got) >= 2, timeout=30_000)
    tab.router.cancel(jid)
    qtbot.waitUntil(lambda: cancelled == [jid], timeout=10_000)
    assert len(after_cancel) <= 1


def test_recipe_sweep_fills_the_table_and_pareto_plots(tab, qtbot, tmp_path):
    panel = tab.sweep_panel
    panel.recipes.setText("fp32,int8,int2")
    panel.limit.setValue(60)
    tab.lower_tabs.setCurrentWidget(panel)
    panel.run_btn.click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=90_000)

    assert panel.model.rowCount() == 3
    assert [panel.model.row_at(i).recipe for i in range(3)] == ["fp32", "int8", "int2"]
    stored = {r.id: r for r in tab.store.list() if r.kind == "sweep"}
    for row in panel.rows:
        assert row.values["accuracy"] == pytest.approx(stored[row.run_id].metrics["accuracy"])
    assert len(panel.latency_plot.points) == 3 and len(panel.size_plot.points) == 3
    assert "int2" in panel.size_plot.front_labels()  # the smallest variant is always on the size frontier
    assert "finished" in panel.status.text()
    csv_rows = summary_rows(Path(panel.out_dir) / "summary.csv")
    assert [int(r["run_id"]) for r in csv_rows] == [r.run_id for r in panel.rows]
    qtbot.wait(80)
    assert set(tab.latency_plot.names()) == {"fp32", "int8", "int2"}  # the sweep streamed into the live plot
    assert all(len(tab.latency_plot.values(n)) == 3 for n in tab.latency_plot.names())

    # Sorting the table by accuracy puts int2 (the weakest) first.
    acc_col = [c.header for c in panel.model.columns].index("accuracy")
    panel.table.sortByColumn(acc_col, panel.table.horizontalHeader().sortIndicatorOrder().AscendingOrder)
    assert panel.proxy.index(0, 1).data() == "int2"

    # Hovering a bubble names the variant.
    plot = panel.latency_plot
    seen = []
    plot.hovered.connect(seen.append)
    i = next(k for k, p in enumerate(plot.points) if p.label == "int2")
    pos = plot.mapFromScene(plot.point_scene_pos(i))
    QTest.mouseMove(plot.viewport(), pos)
    QTest.mouseMove(plot.viewport(), pos + QPoint(1, 0))
    qtbot.waitUntil(lambda: any(s.startswith("int2") for s in seen), timeout=5_000)
    assert plot.getPlotItem().vb.toolTip().startswith("int2")

    # Every plot exports as PNG and SVG.
    for name, widget in [*tab.live_plots(), ("pareto", plot)]:
        png = export_plot(widget, tmp_path / f"{name}.png")
        img = QImage(str(png))
        assert not img.isNull() and img.width() >= 800
        svg = export_plot(widget, tmp_path / f"{name}.svg")
        doc = xml.dom.minidom.parse(str(svg))
        texts = " ".join(t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild)
        assert doc.getElementsByTagName("path") or doc.getElementsByTagName("polyline")
        if name == "pareto":
            assert {"fp32", "int8", "int2"} <= set(texts.split())
    assert not list(tmp_path.glob(".*tmp*"))  # written under temporary names, renamed into place
    with pytest.raises(ValueError):
        export_plot(plot, tmp_path / "plot.jpg")


def test_cancelled_sweep_keeps_finished_rows(tab, qtbot):
    panel = tab.sweep_panel
    panel.recipes.setText("fp32,int8,int4,int3,int2")
    panel.limit.setValue(200)
    panel.run_btn.click()
    qtbot.waitUntil(lambda: panel.model.rowCount() >= 1, timeout=60_000)
    panel.cancel_btn.click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=30_000)
    n = panel.model.rowCount()
    assert 1 <= n < 5
    assert "cancelled" in panel.status.text() and f"{n} finished rows kept" in panel.status.text()
    stored = [r for r in tab.store.list() if r.kind == "sweep"]
    assert [r.id for r in stored] == [r.run_id for r in panel.rows]
    assert len(summary_rows(Path(panel.out_dir) / "summary.csv")) == n
    assert panel.run_btn.isEnabled() and not panel.cancel_btn.isEnabled()


def test_batch_sweep_table_and_plot(tab, qtbot):
    panel = tab.throughput_panel
    panel.batches.setText("1,2,4")
    panel.iters.setValue(2)
    panel.run_btn.click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=60_000)
    assert [panel.model.row_at(i).batch_size for i in range(3)] == [1, 2, 4]
    x, y = panel.throughput_curve.xData, panel.throughput_curve.yData  # raw, before the log-x transform
    assert list(x) == [1, 2, 4]
    assert list(y) == [p.values["throughput_ips"] for p in panel.points]
    assert "best" in panel.status.text()
    panel.batches.setText("1,x")
    panel.run_btn.click()
    assert "not an integer" in panel.status.text() and not panel.busy()
