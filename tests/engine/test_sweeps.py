"""Recipe and batch-size sweeps: rows against independent references, committed row by row."""

from __future__ import annotations

import csv
import json
import sqlite3

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from engine.core.errors import Cancelled, UserError
from engine.image.benchmark import BenchmarkSettings
from engine.image.bundle import load_bundle
from engine.image.data.datasets import open_dataset
from engine.jobs.sweep import (
    SweepJob,
    SweepRow,
    ThroughputJob,
    front_labels,
    parse_batch_sizes,
    parse_recipes,
    sweep_groups,
)
from engine.measure.results import ResultsStore
from engine.runtime import JobContext, Workspace

LIMIT = 120
BENCH = BenchmarkSettings(batch_size=1, iters=4, warmup=1)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_parse_recipes_validates_dedupes_and_labels_group_sizes():
    assert parse_recipes("fp32, INT4,int4,,fp16") == (("fp32", "fp32"), ("int4", "int4"), ("fp16", "fp16"))
    assert parse_recipes("int4,fp16", group_size=32) == (("int4", "int4-g32"), ("fp16", "fp16"))
    with pytest.raises(UserError, match="unknown recipe 'int9'"):
        parse_recipes("fp32,int9")
    with pytest.raises(UserError, match="no recipes"):
        parse_recipes(" , ")
    assert parse_batch_sizes("64,1, 8,8") == (1, 8, 64)
    with pytest.raises(UserError):
        parse_batch_sizes("1,0")
    with pytest.raises(UserError):
        parse_batch_sizes("two")


def test_sweep_rows_match_independent_references_and_are_stored_together(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite3")
    ws = Workspace(store)
    rows_seen = []
    job = SweepJob("default", ("fp32", "int8", "int2"), out=str(tmp_path / "sweep"), bench=BENCH, eval_limit=LIMIT)
    outcome = job.run(JobContext(partial=lambda p: rows_seen.append(p) if isinstance(p, SweepRow) else None), ws)
    assert [r.recipe for r in outcome.rows] == ["fp32", "int8", "int2"] == [r.recipe for r in rows_seen]

    data = open_dataset("default")
    # The default model's input written out by hand: 28x28 grey, /255, MNIST mean and std.
    x = ((data.images[:LIMIT].reshape(LIMIT, 28, 28, 1) / 255.0 - 0.1307) / 0.3081).astype(np.float32)
    y = data.labels[:LIMIT]
    for row in outcome.rows:
        pred = load_bundle(row.values["model_path"]).predict_logits(x).argmax(axis=1)
        assert row.values["accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert row.values["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    # int2 wrecks this model; int8 does not.
    acc = {r.recipe: r.values["accuracy"] for r in outcome.rows}
    assert acc["int8"] > 0.9 and acc["int2"] < acc["int8"]

    records = [store.get(r.run_id) for r in outcome.rows]
    assert {r.kind for r in records} == {"sweep"}
    assert {r.settings["sweep_id"] for r in records} == {outcome.sweep_id}
    assert all(len(r.samples) == BENCH.iters and r.per_class for r in records)
    assert [g.sweep_id for g in sweep_groups(store.list())] == [outcome.sweep_id]

    summary = read_csv(tmp_path / "sweep" / "summary.csv")
    assert [r["recipe"] for r in summary] == ["fp32", "int8", "int2"]
    assert [int(r["run_id"]) for r in summary] == [r.run_id for r in outcome.rows]
    assert float(summary[1]["accuracy"]) == pytest.approx(acc["int8"])
    long_rows = read_csv(tmp_path / "sweep" / "metrics.csv")
    assert {r["class"] for r in long_rows if r["metric"] == "f1"} == {str(i) for i in range(10)}
    assert len(read_csv(tmp_path / "sweep" / "iterations.csv")) == 3 * BENCH.iters
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["status"] == "complete"
    assert (tmp_path / "sweep" / "pareto_latency.png").stat().st_size > 1000
    assert front_labels(outcome.rows, "size_on_disk_bytes")[0] == "int2"  # the smallest is always on the frontier


def test_cancelled_sweep_keeps_finished_rows(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite3")
    rows = []

    def partial(p):
        if isinstance(p, SweepRow):
            rows.append(p)

    job = SweepJob("default", ("fp32", "int8", "int4"), out=str(tmp_path / "s"), bench=BENCH, eval_limit=LIMIT)
    with pytest.raises(Cancelled):
        job.run(JobContext(partial=partial, should_stop=lambda: len(rows) >= 1), Workspace(store))
    assert [r.recipe for r in rows] == ["fp32"]
    stored = [r for r in store.list() if r.kind == "sweep"]
    assert [r.id for r in stored] == [rows[0].run_id]
    assert [r["recipe"] for r in read_csv(tmp_path / "s" / "summary.csv")] == ["fp32"]
    meta = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert meta["status"] == "cancelled" and meta["finished_rows"] == 1
    with sqlite3.connect(store.path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sweep_rejects_bad_input_before_any_work(tmp_path):
    ws = Workspace(ResultsStore(tmp_path / "r.sqlite3"))
    with pytest.raises(UserError, match="unknown recipe"):
        SweepJob("default", ("int4", "int11"), out=str(tmp_path / "a")).run(JobContext(), ws)
    with pytest.raises(UserError, match="dataset not found"):
        SweepJob("default", ("int4",), data=str(tmp_path / "nope"), out=str(tmp_path / "b")).run(JobContext(), ws)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert ws.store.count() == 0


def test_throughput_job_one_row_per_batch_size(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite3")
    out = ThroughputJob("default", (4, 1, 2), iters=3, warmup=1).run(JobContext(), Workspace(store))
    assert [p.batch_size for p in out.points] == [1, 2, 4]
    for p in out.points:
        mean = float(np.mean(p.latencies_ms))
        assert p.values["throughput_ips"] == pytest.approx(p.batch_size * 1000.0 / mean)
    records = store.list()
    assert len(records) == 3 and {r.settings["sweep_kind"] for r in records} == {"batch"}
    assert [r.settings["cold_load"] for r in records] == [True, False, False]  # one cold load, first batch size
    (group,) = sweep_groups(records)
    assert group.kind == "batch" and len(group.run_ids) == 3
