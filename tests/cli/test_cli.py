"""The command-line contract, driven through real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import read_rows
from tests.reference_numpy import small_cnn_forward

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "resources" / "samples"


def run(*args, check_rc: int | None = 0, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ},
        timeout=300,
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, f"rc={proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return proc


def default_weights() -> dict[str, np.ndarray]:
    import mlx.core as mx

    return {k: np.array(v) for k, v in mx.load(str(ROOT / "resources/default_model/model.safetensors")).items()}


def test_predict_tensor_logits_equal_an_independent_numpy_forward(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run("predict", "--model", "default", "--tensor", tmp_path / "x.npy", "--logits-out", tmp_path / "y.npy")
    logits = np.load(tmp_path / "y.npy")
    ref = small_cnn_forward(default_weights(), x)
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=1e-4)


def test_predict_images_json_recognises_the_sample_digits():
    files = [SAMPLES / f"digit_{d}.png" for d in range(10)]
    out = json.loads(run("predict", "--model", "default", *files, "--top-k", "3", "--json").stdout)
    assert out["model"] == "default-small-cnn"
    tops = [p["top_k"][0]["label"] for p in out["predictions"]]
    assert tops == [str(d) for d in range(10)]
    for p in out["predictions"]:
        probs = [t["probability"] for t in p["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6


def test_quantize_then_evaluate_csvs_agree_with_each_other(tmp_path):
    run("quantize", "--model", "default", "--recipe", "int4", "--group-size", "32", "--out", tmp_path / "q")
    cfg = json.loads((tmp_path / "q" / "config.json").read_text())
    assert cfg["quantization"]["layers"]["conv4.conv"] == {
        "type": "conv",
        "mode": "affine",
        "bits": 4,
        "group_size": 32,
    }
    run(
        "evaluate",
        "--model",
        tmp_path / "q",
        "--data",
        "default",
        "--csv",
        tmp_path / "m.csv",
        "--predictions-csv",
        tmp_path / "p.csv",
    )
    metrics = list(read_rows(tmp_path / "m.csv"))
    preds = list(read_rows(tmp_path / "p.csv"))
    assert list(metrics[0]) == ["variant", "metric", "class", "value"]
    assert list(preds[0])[:3] == ["path", "true_label", "pred_label"] and len(preds[0]) == 13
    assert len(preds) == 1000
    overall = {m["metric"]: float(m["value"]) for m in metrics if m["class"] == ""}
    correct = [p["true_label"] == p["pred_label"] for p in preds]
    assert overall["accuracy"] == pytest.approx(np.mean(correct))
    assert overall["accuracy"] > 0.9
    recall7 = next(float(m["value"]) for m in metrics if m["metric"] == "recall" and m["class"] == "7")
    sevens = [p for p in preds if p["true_label"] == "7"]
    assert recall7 == pytest.approx(np.mean([p["pred_label"] == "7" for p in sevens]))
    for p in preds[:20]:
        assert sum(float(p[f"p_{c}"]) for c in range(10)) == pytest.approx(1.0, abs=1e-6)
        assert p["pred_label"] == str(int(np.argmax([float(p[f"p_{c}"]) for c in range(10)])))


def test_benchmark_csv_and_json(tmp_path):
    out = run(
        "benchmark",
        "--model",
        "default",
        "--iters",
        "7",
        "--warmup",
        "1",
        "--batch-size",
        "2",
        "--csv",
        tmp_path / "b.csv",
        "--json",
    )
    data = json.loads(out.stdout)
    assert data["iters"] == 7 and data["batch_size"] == 2 and data["latency_p50_ms"] > 0
    rows = list(read_rows(tmp_path / "b.csv"))
    assert {r["metric"] for r in rows} >= {"latency_mean_ms", "latency_p99_ms", "throughput_ips", "peak_memory_bytes"}
    its = list(read_rows(tmp_path / "b_iterations.csv"))
    assert len(its) == 7 and all(float(r["latency_ms"]) > 0 for r in its)


def test_import_torch_layout_safetensors_reproduces_the_model(tmp_path):
    from safetensors.numpy import save_file

    w = default_weights()
    torch_layout = {k: (v.transpose(0, 3, 1, 2) if v.ndim == 4 else v) for k, v in w.items()}
    torch_layout["stem.bn.num_batches_tracked"] = np.array(7, dtype=np.int64)
    save_file({k: np.ascontiguousarray(v) for k, v in torch_layout.items()}, str(tmp_path / "ckpt.safetensors"))
    run(
        "import",
        "--arch",
        "small_cnn",
        "--weights",
        tmp_path / "ckpt.safetensors",
        "--labels",
        ",".join("zero one two three four five six seven eight nine".split()),
        "--out",
        tmp_path / "b",
    )
    x = np.random.default_rng(1).standard_normal((2, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = json.loads(
        run(
            "predict",
            "--model",
            tmp_path / "b",
            "--tensor",
            tmp_path / "x.npy",
            "--json",
            "--logits-out",
            tmp_path / "y.npy",
        ).stdout
    )
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), small_cnn_forward(w, x), atol=1e-4, rtol=1e-4)
    assert out["predictions"][0]["top_k"][0]["label"] in "zero one two three four five six seven eight nine".split()


def test_demo_writes_summary_and_plots(tmp_path):
    out = run("demo", "--out", tmp_path / "demo", "--iters", "3", "--warmup", "1")
    assert "int4" in out.stdout and "accuracy" in out.stdout
    rows = list(read_rows(tmp_path / "demo" / "summary.csv"))
    assert [r["recipe"] for r in rows] == ["fp32", "fp16", "int8", "int4"]
    size = {r["recipe"]: float(r["size_on_disk_bytes"]) for r in rows}
    assert size["int4"] < size["int8"] < size["fp16"] < size["fp32"]
    assert all(float(r["accuracy"]) > 0.9 for r in rows)
    for png in ("latency.png", "accuracy_vs_size.png"):
        assert (tmp_path / "demo" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["evaluate", "--model", "{tmp}/missing"], "model not found"),
        (["predict", "--model", "default", "{tmp}/notes.png"], "not an image file"),
        (["predict", "--model", "default", "{tmp}/empty.png"], "empty file"),
        (
            ["quantize", "--model", "default", "--recipe", "int7", "--out", "{tmp}/q"],
            "takes bits in (2, 3, 4, 5, 6, 8)",
        ),
        (["quantize", "--model", "default", "--recipe", "int9", "--out", "{tmp}/q"], "unknown recipe 'int9'"),
        (
            ["quantize", "--model", "default", "--recipe", "fp16", "--group-size", "64", "--out", "{tmp}/q"],
            "takes no group size",
        ),
        (["evaluate", "--model", "default", "--data", "{tmp}/two_classes"], "class-count mismatch"),
        (["evaluate", "--model", "{tmp}/truncated"], "truncated or corrupt"),
        (
            ["import", "--arch", "small_cnn", "--weights", "{tmp}/notes.png", "--out", "{tmp}/b"],
            "unsupported checkpoint",
        ),
        (["predict", "--model", "default", "--tensor", "{tmp}/wrong.npy"], "the model takes (N, 28, 28, 1)"),
    ],
)
def test_bad_input_is_one_line_exit_1(tmp_path, args, needle):
    from PIL import Image

    (tmp_path / "notes.png").write_text("just some text\n")
    (tmp_path / "empty.png").write_bytes(b"")
    for c in ("a", "b"):
        (tmp_path / "two_classes" / c).mkdir(parents=True)
        Image.new("L", (28, 28)).save(tmp_path / "two_classes" / c / "x.png")
    import shutil

    shutil.copytree(ROOT / "resources" / "default_model", tmp_path / "truncated")
    (tmp_path / "truncated" / "model.safetensors").write_bytes(b"\x00" * 100)
    np.save(tmp_path / "wrong.npy", np.zeros((1, 32, 32, 3), np.float32))
    proc = run(*[a.format(tmp=tmp_path) for a in args], check_rc=1)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "q").exists() and not (tmp_path / "b").exists()


def test_usage_errors_exit_2():
    proc = run("quantize", "--recipe", "int8", check_rc=2)
    assert "--model" in proc.stderr
    run("frobnicate", check_rc=2)


def test_cli_imports_no_qt():
    code = (
        "import sys; from engine.cli import main; rc = main(['info', '--model', 'default']); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6', 'gui')]; "
        "print('QT', bad); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "QT []" in proc.stdout
