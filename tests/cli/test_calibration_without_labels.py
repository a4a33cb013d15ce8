"""Calibration never needs labels (issues 15, 16, 21): sensitivity, autoquant with a size target and
activation calibration take any folder or .npz of images, whatever the model's class count."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from tests.engine.test_bundle import tiny_bundle


@pytest.fixture
def three_class_model(tmp_path):
    return str(tiny_bundle(num_classes=3).save(tmp_path / "three classes"))


def photo_folder(root, n=12):
    """Unlabelled grey images, flat and in a nested folder (no class subfolders to speak of)."""
    rng = np.random.default_rng(0)
    (root / "scans" / "2024").mkdir(parents=True)
    for i in range(n):
        where = root / "scans" / ("2024" if i % 2 else "")
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(where / f"scan {i}.png")
    return root / "scans"


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def test_autoquant_size_target_on_unlabelled_folder(tmp_path, capsys, three_class_model):
    folder = photo_folder(tmp_path)
    out = tmp_path / "variant"
    text = run(
        capsys, "autoquant", "--model", three_class_model, "--target-bpw", "6", "--data", str(folder),
        "--calib", "8", "--candidates", "int4,int8", "--out", str(out), "--json",
    )  # fmt: skip
    res = json.loads(text)
    assert res["bits_per_weight"] <= 6.0 + 1e-9
    assert (out / "config.json").is_file()


def test_sensitivity_on_unlabelled_npz(tmp_path, capsys, three_class_model):
    images = np.random.default_rng(1).integers(0, 255, (10, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "scans.npz", images=images)  # no labels at all
    text = run(
        capsys, "sensitivity", "--model", three_class_model, "--data", str(tmp_path / "scans.npz"),
        "--formats", "int4", "--calib", "6", "--json",
    )  # fmt: skip
    rows = json.loads(text)["rows"]
    assert rows and all(r["kl"] >= 0 for r in rows)
    assert all(r.get("accuracy") is None for r in rows)


def test_a_folder_with_no_images_is_one_line(tmp_path, capsys, three_class_model):
    (tmp_path / "empty scans").mkdir()
    rc = main(["sensitivity", "--model", three_class_model, "--data", str(tmp_path / "empty scans")])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "empty scans" in err
