"""A recipe sweep compares quantization methods side by side: ``int2@gptq+bc`` beside ``int2``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core.errors import UserError
from engine.image.benchmark import BenchmarkSettings
from engine.jobs.sweep import SweepJob, parse_recipes
from engine.measure.results import ResultsStore
from engine.runtime import JobContext, Workspace


def test_parse_recipes_takes_a_method_suffix():
    assert parse_recipes("int4,int4@gptq,int4@rtn", group_size=32) == (
        ("int4", "int4-g32"),
        ("int4@gptq", "int4-g32@gptq"),
    )
    with pytest.raises(UserError, match="unknown quantization method 'obq'"):
        parse_recipes("int4@obq")


def test_sweep_rows_per_method_at_equal_bits(tmp_path):
    ws = Workspace(ResultsStore(tmp_path / "r.sqlite3"))
    job = SweepJob("default", ("int2", "int2@gptq+bc"), out=str(tmp_path / "sweep"), group_size=32,
                   bench=BenchmarkSettings(batch_size=1, iters=3, warmup=1), eval_limit=200, plots=False)  # fmt: skip
    outcome = job.run(JobContext(), ws)
    rows = {r.recipe: r.values for r in outcome.rows}
    assert set(rows) == {"int2-g32", "int2-g32@gptq+bc"}
    assert rows["int2-g32"]["bits_per_weight"] == pytest.approx(rows["int2-g32@gptq+bc"]["bits_per_weight"])
    cfg = json.loads((Path(rows["int2-g32@gptq+bc"]["model_path"]) / "config.json").read_text())
    assert cfg["quantization"]["method"]["name"] == "gptq+bc"
    assert cfg["quantization"]["method"]["calibration"] == "default-val"
