"""``quantize --method ... --calib DATA --calib-size N`` and QuantizeJob's method fields, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.core.errors import Cancelled
from engine.image.bundle import load_bundle
from engine.image.quant.calibration import OutputChange, logits_of
from engine.image.quant.layers import QUANTIZED_TYPES
from engine.image.quant.methods.affine import unpack_codes
from engine.jobs.image import QuantizeJob
from engine.runtime import JobContext, Workspace
from tests.engine.test_bundle import tiny_bundle


@pytest.fixture
def float_model(tmp_path):
    return str(tiny_bundle(num_classes=3).save(tmp_path / "float"))


def unlabelled_npz(path, n=24):
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
    return path


def test_cli_method_on_unlabelled_npz_records_method_and_reloads(tmp_path, capsys, float_model):
    calib = unlabelled_npz(tmp_path / "calib.npz")
    out = tmp_path / "gptq"
    rc = main(["quantize", "--model", float_model, "--recipe", "int3", "--group-size", "32", "--method", "gptq+bc",
               "--calib", str(calib), "--calib-size", "16", "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    method = cfg["quantization"]["method"]
    assert method["name"] == "gptq+bc" and method["calibration"] == "calib.npz" and method["calibration_size"] == 16
    assert cfg["source"]["method"] == "gptq+bc" and cfg["source"]["calibration_size"] == 16
    bundle = load_bundle(out)
    for _path, m in bundle.model.named_modules():
        if isinstance(m, QUANTIZED_TYPES):
            cols = m.scales.shape[1] * m.group_size
            assert unpack_codes(np.array(m.weight), m.bits, cols).max() <= 7
    # the reloaded model computes what an RTN variant's structure computes: same loader, no special case
    rtn = tmp_path / "rtn"
    assert main(["quantize", "--model", float_model, "--recipe", "int3", "--group-size", "32", "--out", str(rtn)]) == 0
    assert json.loads((rtn / "config.json").read_text())["source"]["method"] == "rtn"
    x = np.random.default_rng(1).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
    assert np.isfinite(logits_of(bundle.model, x)).all()


def test_job_records_method_in_run_and_beats_rtn_on_calibration(tmp_path, float_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"p{i}.png")
    ws = Workspace()
    steps = []
    ctx = JobContext(progress=lambda f, m: steps.append((f, m)))
    o = QuantizeJob(float_model, "int2", str(tmp_path / "g"), 32, method="gptq", calib=str(folder), calib_size=20).run(
        ctx, ws
    )
    assert o.record.settings["method"]["name"] == "gptq" and o.record.settings["method"]["calibration_size"] == 20
    assert o.record.metrics["quantization_seconds"] > 0 and o.record.metrics["quantization_peak_memory_bytes"] > 0
    assert any("(gptq)" in m for _, m in steps)
    r = QuantizeJob(float_model, "int2", str(tmp_path / "r"), 32).run(JobContext(), ws)
    x = load_bundle(float_model).preprocessing.normalize(
        np.stack([np.asarray(Image.open(folder / f"p{i}.png"))[..., None] for i in range(20)])
    )
    ref = logits_of(load_bundle(float_model).model, x)
    kl_g = OutputChange.between(ref, logits_of(load_bundle(o.path).model, x)).kl
    kl_r = OutputChange.between(ref, logits_of(load_bundle(r.path).model, x)).kl
    assert kl_g < kl_r, (kl_g, kl_r)


def test_cancelled_method_job_writes_nothing(tmp_path, float_model):
    calib = unlabelled_npz(tmp_path / "c.npz")
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        QuantizeJob(float_model, "int4", str(tmp_path / "q"), method="adaround", calib=str(calib)).run(
            JobContext(should_stop=stop), Workspace()
        )
    assert not (tmp_path / "q").exists()


def test_bad_calibration_is_one_line_error(tmp_path, capsys, float_model):
    bad = tmp_path / "notes.txt"
    bad.write_text("not images")
    rc = main(["quantize", "--model", float_model, "--recipe", "int4", "--method", "gptq", "--calib", str(bad),
               "--out", str(tmp_path / "q")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "q").exists()


def test_memory_guard_stops_a_method_that_would_not_fit(tmp_path, float_model, monkeypatch):
    import engine.core.memory_guard as guard
    from engine.core.errors import UserError

    monkeypatch.setenv("MQS_MEMORY_GUARD", "1")
    monkeypatch.setattr(guard, "available_memory_bytes", lambda: 2**20)  # the RTN path's own check still passes
    calib = unlabelled_npz(tmp_path / "c.npz")
    with pytest.raises(UserError, match="not enough memory to quantize with gptq"):
        QuantizeJob(float_model, "int4", str(tmp_path / "q"), method="gptq", calib=str(calib)).run(
            JobContext(), Workspace()
        )
    assert not (tmp_path / "q").exists()
