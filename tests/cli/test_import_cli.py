"""`main.py import` then `main.py predict` reproduce torchvision's logits; preprocessing and labels flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.importers.reference import (
    load_reference,
    reference_input_nhwc,
    reference_logits,
    reference_weights,
    save_safetensors,
)

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env_dir: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "MQS_DATA_DIR": str(env_dir)}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def test_import_then_predict_equals_torchvision(tmp_path):
    ref = load_reference("torchvision_resnet18_3class")
    ckpt = save_safetensors(reference_weights(ref), tmp_path / "r18.safetensors")
    np.save(tmp_path / "x.npy", reference_input_nhwc(ref))
    bundle = tmp_path / "B"
    r = run_cli(
        "import", "--arch", "resnet18", "--weights", str(ckpt), "--num-classes", "3", "--input-size", "64x48",
        "--out", str(bundle), env_dir=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "resnet18" in r.stdout and "3 classes" in r.stdout
    r = run_cli(
        "predict", "--model", str(bundle), "--tensor", str(tmp_path / "x.npy"), "--logits-out", str(tmp_path / "y.npy"),
        env_dir=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "y.npy")
    assert got.shape == (2, 3)
    assert np.abs(got - reference_logits(ref)).max() <= 1e-3


def test_import_records_preprocessing_and_labels_file(tmp_path):
    ref = load_reference("torchvision_mobilenet_v2_w050")
    ckpt = save_safetensors(reference_weights(ref), tmp_path / "m.safetensors")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(7)) + "\n")
    r = run_cli(
        "import", "--arch", "mobilenet_v2", "--weights", str(ckpt), "--labels", str(labels),
        "--preprocess", "inception,resize=stretch,interpolation=bicubic", "--input-size", "96",
        "--out", str(tmp_path / "B"), env_dir=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "B" / "config.json").read_text())
    assert cfg["labels"][6] == "class 6"
    assert cfg["arch_config"]["width_mult"] == 0.5
    p = cfg["preprocessing"]
    assert (p["input_size"], p["scale"], p["mean"], p["resize"], p["interpolation"]) == (
        [96, 96], "symmetric", None, "stretch", "bicubic",
    )  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "resnet18", "--preprocess", "imagenet,warp=9"], "unknown preprocessing key 'warp'"),
        (["--arch", "resnet18", "--preprocess", "bogus"], "unknown preprocessing preset 'bogus'"),
        (["--arch", "resnet18", "--input-size", "12xQ"], "input size '12xQ'"),
        ([], "choose one with --arch"),
        (["--arch", "resnet18", "--num-classes", "3"], "fc.weight (7, 512) vs (3, 512)"),
    ],
)
def test_import_errors_are_one_line(tmp_path, args, message):
    ref = load_reference("torchvision_resnet18")
    ckpt = save_safetensors(reference_weights(ref), tmp_path / "r.safetensors")
    r = run_cli("import", "--weights", str(ckpt), "--out", str(tmp_path / "B"), *args, env_dir=tmp_path)
    assert r.returncode == 1
    assert message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "B").exists()
