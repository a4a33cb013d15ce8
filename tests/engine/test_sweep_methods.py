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


def test_sweep_calibrates_methods_on_the_given_images_and_says_so(tmp_path):
    import numpy as np
    from PIL import Image

    from engine.cli import parse

    digits = np.load(Path(__file__).parents[2] / "resources" / "data" / "mnist_val.npz")["images"][:24]
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i, img in enumerate(digits):
        Image.fromarray(img).save(folder / f"scan_{i:03d}.png")
    _, args = parse(["sweep", "--model", "default", "--recipes", "int4@gptq", "--out", "x", "--calib", str(folder),
                     "--calib-size", "16"])  # fmt: skip
    assert (args.calib, args.calib_size) == (str(folder), 16)

    ws = Workspace(ResultsStore(tmp_path / "r.sqlite3"))
    job = SweepJob("default", ("int4@gptq",), out=str(tmp_path / "sweep"), group_size=32, calib=args.calib,
                   calib_size=args.calib_size, bench=BenchmarkSettings(batch_size=1, iters=2, warmup=1),
                   eval_limit=50, plots=False)  # fmt: skip
    row = job.run(JobContext(), ws).rows[0].values
    method = json.loads((Path(row["model_path"]) / "config.json").read_text())["quantization"]["method"]
    assert (method["calibration"], method["calibration_size"]) == ("unlabelled", 16)
    meta = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert meta["calibration"] == {"data": str(folder), "size": 16}
