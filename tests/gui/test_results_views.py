"""Results tab: sweeps shown together, Pareto view, reopen a run, compare two, export, delete."""

from __future__ import annotations

import csv
import shutil

import pytest
from PySide6.QtWidgets import QMessageBox

from engine.image.benchmark import BenchmarkSettings
from engine.jobs.sweep import SweepJob, ThroughputJob
from engine.measure.results import ResultsStore
from engine.runtime import JobContext, Workspace
from gui.app import MainWindow
from gui.widgets.compare_view import BETTER, WORSE


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory):
    """One recipe sweep (fp32, int2) and one batch sweep, made once for the module."""
    path = tmp_path_factory.mktemp("store") / "results.sqlite3"
    store = ResultsStore(path)
    ws = Workspace(store)
    sweep = SweepJob(
        "default",
        ("fp32", "int2"),
        out=str(path.parent / "sweep"),
        bench=BenchmarkSettings(iters=3, warmup=0),
        eval_limit=80,
        plots=False,
    ).run(JobContext(), ws)
    batch = ThroughputJob("default", (1, 2), iters=2, warmup=0).run(JobContext(), ws)
    return path, sweep, batch


@pytest.fixture
def results(qtbot, filled_store, tmp_path):
    path, sweep, batch = filled_store
    copy = tmp_path / "results.sqlite3"  # each test may change its own copy
    shutil.copyfile(path, copy)
    window = MainWindow(ResultsStore(copy))
    qtbot.addWidget(window)
    window.resize(1300, 850)
    window.show()
    window.tabs.setCurrentWidget(window.results_tab)
    yield window.results_tab, sweep, batch
    window.close()


def select_ids(tab, ids) -> None:
    tab.select_runs(ids)
    assert {r.id for r in tab.selected_records()} == set(ids)


def test_sweeps_are_shown_together_with_a_pareto_view(results):
    tab, sweep, batch = results
    assert tab.model.rowCount() == 4
    ids = [tab.sweep.itemData(i) for i in range(tab.sweep.count())]
    assert ids[0] is None and set(ids[1:]) == {sweep.sweep_id, batch.sweep_id}
    tab.show_sweep(sweep.sweep_id)
    assert sorted(r.id for r in tab.visible_records()) == sorted(r.run_id for r in sweep.rows)
    plot = tab.pareto.latency_plot
    assert sorted(p.label for p in plot.points) == ["fp32", "int2"]
    assert tab.pareto.size_plot.front_labels()[0] == "int2"
    tab.show_sweep(batch.sweep_id)
    assert {r.settings["batch_size"] for r in tab.visible_records()} == {1, 2}
    tab.sweep.setCurrentIndex(0)
    tab.kind.setCurrentText("sweep")
    assert tab.proxy.rowCount() == 2
    # Clicking a bubble selects its runs.
    fp32 = next(p for p in tab.pareto.latency_plot.points if p.label == "fp32")
    tab.select_runs(fp32.key)
    assert [r.recipe for r in tab.selected_records()] == ["fp32"]


def test_compare_two_runs_side_by_side_with_deltas(results, tmp_path):
    tab, sweep, _ = results
    a_id, b_id = (r.run_id for r in sweep.rows)  # fp32, int2
    select_ids(tab, [a_id, b_id])
    dialog = tab.compare_selected()
    a, b = tab.store.get(a_id), tab.store.get(b_id)
    deltas = {d.metric: d for d in dialog.deltas}
    assert deltas["accuracy"].delta == pytest.approx(b.metrics["accuracy"] - a.metrics["accuracy"])
    assert deltas["size_on_disk_bytes"].ratio == pytest.approx(
        b.metrics["size_on_disk_bytes"] / a.metrics["size_on_disk_bytes"]
    )
    rows = {dialog.metrics.item(i, 0).text(): i for i in range(dialog.metrics.rowCount())}
    assert dialog.metrics.item(rows["accuracy"], 3).foreground().color() == WORSE  # int2 loses accuracy
    assert dialog.metrics.item(rows["size_on_disk_bytes"], 3).foreground().color() == BETTER  # and is smaller
    assert dialog.metrics.item(rows["size_on_disk_bytes"], 1).text().endswith("KB")
    differs = [dialog.differences.item(i, 0).text() for i in range(dialog.differences.rowCount())]
    assert "recipe" in differs and "model_hash" in differs and "environment.mlx_version" not in differs
    out = dialog.export_csv(tmp_path / "cmp.csv")
    with open(out, newline="") as f:
        got = {r["metric"]: r for r in csv.DictReader(f)}
    assert float(got["accuracy"]["delta"]) == pytest.approx(deltas["accuracy"].delta)
    dialog.close()
    select_ids(tab, [a_id])
    assert tab.compare_selected() is None  # needs exactly two


def test_reopen_a_run_with_per_class_metrics_and_sample_plots(results, tmp_path):
    tab, sweep, _ = results
    select_ids(tab, [sweep.rows[0].run_id])
    dialog = tab.open_selected()
    assert dialog.per_class.rowCount() == 10  # classes
    headers = [dialog.per_class.horizontalHeaderItem(i).text() for i in range(dialog.per_class.columnCount())]
    # The evaluation suite's per-class metrics; confusion cells and reliability bins are not rows.
    assert headers[:5] == ["class", "precision", "recall", "f1", "support"]
    assert "specificity" in headers and "confusion" not in headers
    keys = [dialog.settings_table.item(i, 0).text() for i in range(dialog.settings_table.rowCount())]
    assert "settings.sweep_id" in keys and "environment.mlx_version" in keys and "environment.machine" in keys
    (_, latency), (_, mlx), (_, rss) = dialog.plots
    samples = dialog.record.samples
    (curve,) = latency.getPlotItem().listDataItems()
    assert list(curve.yData) == [s[1] for s in samples]
    # MLX memory and process RSS on separate axes, both in MiB.
    ((mlx_curve,), (rss_curve,)) = mlx.getPlotItem().listDataItems(), rss.getPlotItem().listDataItems()
    assert list(mlx_curve.yData) == pytest.approx([s[2] / 2**20 for s in samples])
    assert list(rss_curve.yData) == pytest.approx([s[3] / 2**20 for s in samples])
    from gui.widgets.plot_export import export_plot

    assert export_plot(latency, tmp_path / "lat.svg").stat().st_size > 500
    dialog.close()


def test_csv_exports_and_delete(results, tmp_path, monkeypatch):
    tab, sweep, _ = results
    ids = [r.run_id for r in sweep.rows]
    select_ids(tab, ids)
    with open(tab.export_long(tmp_path / "long.csv"), newline="") as f:
        long_rows = list(csv.DictReader(f))
    assert {r["class"] for r in long_rows if r["metric"] == "recall"} == {str(i) for i in range(10)}
    with open(tab.export_samples(tmp_path / "it.csv"), newline="") as f:
        assert len(list(csv.DictReader(f))) == 2 * 3
    with open(tab.export_summary(tmp_path / "sum.csv"), newline="") as f:
        assert sorted(int(r["id"]) for r in csv.DictReader(f)) == sorted(ids)

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    tab.table.selectionModel().clearSelection()
    select_ids(tab, [ids[1]])
    tab.delete_selected()
    assert tab.store.get(ids[1]) is None
    assert ids[1] not in {r.id for r in tab.visible_records()}


def test_an_image_run_and_a_language_model_run_are_not_compared(results):
    from engine.measure.results import RunRecord

    tab, sweep, _ = results
    lm = tab.store.add(
        RunRecord(kind="evaluate", model_name="default-lm", model_path="", recipe="fp32", metrics={"perplexity": 285.6})
    )
    tab.refresh()
    select_ids(tab, [sweep.rows[0].run_id, lm.id])
    assert tab.compare_selected() is None
    message = tab.window().statusBar().currentMessage()
    assert "image classifier" in message and "language model" in message
