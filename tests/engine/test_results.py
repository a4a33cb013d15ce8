"""Results store: persistence, per-class rows, samples, CSV exports with raw values."""

from __future__ import annotations

import math

from engine.measure.results import ResultsStore, RunRecord, export_long_csv, export_samples_csv, export_summary_csv
from tests.helpers import read_rows


def _record(**kw) -> RunRecord:
    base = dict(
        kind="evaluate",
        model_name="m",
        recipe="int4",
        dataset="default",
        metrics={"accuracy": 0.123456789012, "macro_f1": 0.5},
        per_class=(("f1", "0", 0.25), ("f1", "1", 0.75)),
        settings={"batch_size": 8},
        environment={"device": "cpu"},
    )
    base.update(kw)
    return RunRecord(**base)


def test_records_persist_across_store_instances(tmp_path):
    path = tmp_path / "r.sqlite3"
    a = ResultsStore(path).add(_record())
    b = ResultsStore(path).add(_record(kind="benchmark", metrics={"latency_p50_ms": 1.5}, samples=((0, 1.5, 10, 20),)))
    store = ResultsStore(path)
    runs = store.list()
    assert [r.id for r in runs] == [a.id, b.id]
    full = store.get(a.id)
    assert full.metrics["accuracy"] == 0.123456789012
    assert full.per_class == (("f1", "0", 0.25), ("f1", "1", 0.75))
    assert full.settings == {"batch_size": 8} and full.environment == {"device": "cpu"}
    assert store.get(b.id).samples == ((0, 1.5, 10, 20),)
    assert a.created


def test_delete_removes_metrics_and_samples(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite3")
    r = store.add(_record(samples=((0, 1.0, 1, 1),)))
    store.delete([r.id])
    assert store.count() == 0 and store.get(r.id) is None
    import sqlite3

    con = sqlite3.connect(store.path)
    assert con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0
    assert con.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 0


def test_nan_metrics_round_trip_as_nan(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite3")
    r = store.add(_record(metrics={"x": float("nan")}))
    assert math.isnan(store.get(r.id).metrics["x"])


def test_csv_exports_write_raw_values_under_a_header(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite3")
    store.add(_record())
    store.add(_record(kind="benchmark", metrics={"latency_p50_ms": 2.0}, per_class=(), samples=((0, 2.0, 5, 6),)))
    records = [store.get(r.id) for r in store.list()]

    summary = list(read_rows(export_summary_csv(records, tmp_path / "s.csv")))
    assert summary[0]["accuracy"] == "0.123456789012"  # raw, not "12.35%"
    assert summary[1]["latency_p50_ms"] == "2.0" and summary[1]["accuracy"] == ""

    long = list(read_rows(export_long_csv(records, tmp_path / "l.csv")))
    assert {"run_id", "variant", "metric", "class", "value"} == set(long[0])
    assert {"variant": "m [int4]", "metric": "f1", "class": "1", "value": "0.75"}.items() <= long[3].items()

    samples = list(read_rows(export_samples_csv(records, tmp_path / "it.csv"), dicts=False))
    assert samples[0] == ["run_id", "variant", "iteration", "latency_ms", "active_memory", "rss"]
    assert samples[1][2:] == ["0", "2.0", "5", "6"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_exports_follow_the_umask_and_write_counts_as_integers(tmp_path):
    import os

    store = ResultsStore(tmp_path / "r.sqlite3")
    store.add(_record(metrics={"n": 1000.0, "params": 95274.0, "accuracy": 1.0, "size_on_disk_bytes": 2048.0}))
    import subprocess
    import sys

    code = f"from engine.core.fileio import write_csv; write_csv({str(tmp_path / 'x.csv')!r}, ['a'], [[1]])"
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        subprocess.run([sys.executable, "-c", code], check=True, preexec_fn=lambda u=umask: os.umask(u))
        assert ((tmp_path / "x.csv").stat().st_mode & 0o777) == mode
    summary = list(read_rows(export_summary_csv(store.list(full=True), tmp_path / "s.csv")))[0]
    assert (summary["n"], summary["params"], summary["size_on_disk_bytes"]) == ("1000", "95274", "2048")
    assert summary["accuracy"] == "1.0"  # a rate stays a float
    assert "mlx_version" in summary and "device" in summary  # where it ran goes with every row
