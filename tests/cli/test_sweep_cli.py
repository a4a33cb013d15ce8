"""`main.py sweep` / `main.py throughput`, and a sweep killed with SIGKILL half way."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.measure.results import ResultsStore, RunRecord

ROOT = Path(__file__).resolve().parents[2]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_sweep_command_prints_table_and_writes_files(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(["sweep", "--model", "default", "--recipes", "fp32,int4", "--out", str(out), "--iters", "3",
               "--warmup", "0", "--limit", "60"])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0
    assert "fp32" in text and "int4" in text and "Pareto frontier, accuracy vs size" in text
    rows = read_csv(out / "summary.csv")
    assert [r["recipe"] for r in rows] == ["fp32", "int4"]
    assert float(rows[1]["size_on_disk_bytes"]) < float(rows[0]["size_on_disk_bytes"]) / 4
    for name in ("metrics.csv", "iterations.csv", "pareto_latency.png", "pareto_size.png", "sweep.json"):
        assert (out / name).exists(), name


def test_sweep_command_errors_are_one_line(tmp_path, capsys):
    assert main(["sweep", "--model", "default", "--recipes", "fp32,int9", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown recipe 'int9'" in err
    assert main(["sweep", "--model", str(tmp_path / "missing"), "--recipes", "int4", "--out", str(tmp_path / "x")]) == 1
    assert "model not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--model", "default", "--recipes", "int4"])  # --out missing
    assert exc.value.code == 2


def test_throughput_command_json_and_csv(tmp_path, capsys):
    csv_path = tmp_path / "tp.csv"
    rc = main(["throughput", "--model", "default", "--batch-sizes", "1,4", "--iters", "2", "--warmup", "0",
               "--csv", str(csv_path), "--json"])  # fmt: skip
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["batch_size"] for p in doc["points"]] == [1, 4]
    rows = read_csv(csv_path)
    assert [int(r["batch_size"]) for r in rows] == [1, 4]
    for r in rows:
        assert float(r["throughput_ips"]) == pytest.approx(int(r["batch_size"]) * 1000 / float(r["latency_mean_ms"]))
    assert main(["throughput", "--model", "default", "--batch-sizes", "0"]) == 1


RECIPES = "fp32,fp16,int8,int6,int5,int4,int3,int2"


def test_sigkill_mid_sweep_leaves_every_finished_row_consistent(tmp_path):
    """kill -9 after the first committed row: the database and summary.csv hold whole rows only."""
    data_dir = tmp_path / "data"
    out = tmp_path / "sweep"
    env = {**os.environ, "MQS_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    iters = 3
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "sweep",
            "--model",
            "default",
            "--recipes",
            RECIPES,
            "--out",
            str(out),
            "--iters",
            str(iters),
            "--warmup",
            "0",
            "--limit",
            "200",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    db = data_dir / "results.sqlite3"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                        if con.execute("SELECT COUNT(*) FROM runs WHERE kind='sweep'").fetchone()[0] >= 1:
                            break
                except sqlite3.OperationalError:
                    pass
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = ResultsStore(db)
    runs = [store.get(r.id) for r in store.list() if r.kind == "sweep"]
    assert 1 <= len(runs) < len(RECIPES.split(",")), "the kill must land mid-sweep"
    recipes = RECIPES.split(",")
    for i, r in enumerate(runs):  # every stored row is whole
        assert r.recipe == recipes[i] and r.settings["sweep_index"] == i
        assert {"accuracy", "macro_f1", "latency_p50_ms", "peak_memory_bytes", "size_on_disk_bytes"} <= set(r.metrics)
        # The evaluation suite's rows, as an evaluate run stores them: per class and confusion cells.
        counts = {m: sum(1 for pm, _, _ in r.per_class if pm == m) for m in ("precision", "recall", "f1", "support")}
        assert counts == {"precision": 10, "recall": 10, "f1": 10, "support": 10}
        assert sum(1 for pm, _, _ in r.per_class if pm == "confusion") == 100
        assert len(r.samples) == iters
    assert len({r.settings["sweep_id"] for r in runs}) == 1
    # summary.csv is rewritten atomically after each commit: whole rows, each one in the database.
    summary = read_csv(out / "summary.csv") if (out / "summary.csv").exists() else []
    assert len(runs) - 1 <= len(summary) <= len(runs)
    by_id = {r.id: r for r in runs}
    for row in summary:
        rec = by_id[int(row["run_id"])]
        assert row["recipe"] == rec.recipe
        assert float(row["accuracy"]) == pytest.approx(rec.metrics["accuracy"])
    assert json.loads((out / "sweep.json").read_text())["status"] == "running"  # it never finished
    from engine.jobs.sweep_state import read_sweep_state

    assert read_sweep_state(out).status == "interrupted"  # and reads so, its process being gone
    # The database takes new runs after the crash.
    store.add(RunRecord(kind="benchmark", model_name="after-crash", metrics={"x": 1.0}))
    assert store.count() == len(store.list())
