"""The extended ``evaluate`` command and ``gradcam``: CSV contract, comparisons, plots, errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from engine.cli import main
from engine.core.paths import SAMPLES_DIR
from tests.engine.test_dataset_layouts import make_ham
from tests.evaluation_helpers import tiny_bundle


@pytest.fixture(scope="module")
def int4(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "int4"
    assert main(["quantize", "--model", "default", "--recipe", "int4", "--out", str(out)]) == 0
    return str(out)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_contract_holds_for_every_metric_and_matches_sklearn(tmp_path, capsys):
    metrics_csv, preds_csv = tmp_path / "m.csv", tmp_path / "p.csv"
    code = main(
        [
            "evaluate",
            "--model",
            "default",
            "--limit",
            "60",
            "--csv",
            str(metrics_csv),
            "--predictions-csv",
            str(preds_csv),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "ECE" in out and "ROC-AUC" in out
    rows = _rows(metrics_csv)
    assert rows[0] == ["variant", "metric", "class", "value"]
    assert all(len(r) == 4 for r in rows)
    values = {(r[1], r[2]): float(r[3]) for r in rows[1:]}
    preds = _rows(preds_csv)
    header = preds[0]
    labels = [h[2:] for h in header[3:]]
    y = np.array([labels.index(r[1]) for r in preds[1:]])
    p = np.array([[float(v) for v in r[3:]] for r in preds[1:]])
    k = list(range(len(labels)))
    assert values[("accuracy", "")] == pytest.approx(skm.accuracy_score(y, p.argmax(1)), abs=1e-6)
    assert values[("macro_f1", "")] == pytest.approx(skm.f1_score(y, p.argmax(1), average="macro", labels=k), abs=1e-6)
    assert values[("nll", "")] == pytest.approx(skm.log_loss(y, p, labels=k), abs=1e-6)
    assert values[("top_3_accuracy", "")] == pytest.approx(skm.top_k_accuracy_score(y, p, k=3, labels=k), abs=1e-6)
    present = [c for c in k if (y == c).any()]
    for c in present[:3]:
        assert values[("roc_auc", labels[c])] == pytest.approx(skm.roc_auc_score(y == c, p[:, c]), abs=1e-6)
    assert values[("confusion", f"{labels[y[0]]} -> {labels[p[0].argmax()]}")] >= 1


def test_compare_bootstrap_corruptions_json_and_plots(tmp_path, capsys, int4):
    plots = tmp_path / "plots"
    code = main(
        [
            "evaluate", "--model", "default", "--compare", int4, "--limit", "32", "--batch-size", "16",
            "--bootstrap", "10", "--corruptions", "noise", "--severities", "2", "--plots", str(plots), "--json",
        ]
    )  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["variant"] == "default-small-cnn" and "ece_uniform" in data and "accuracy_ci_low" in data
    (cmp,) = data["compare"]
    assert cmp["variant"].endswith("int4") and 0 <= cmp["flip_rate"] <= 1 and "delta_accuracy" in cmp
    assert "accuracy@gaussian_noise:2" in cmp
    for name in ("per_class.csv", "reliability.png", "robustness.png", "robustness.csv"):
        assert (plots / name).is_file()
    confusion_png = next(plots.glob("confusion_*.png"))
    assert Image.open(confusion_png).size[0] > 600
    per_class = _rows(plots / "per_class.csv")
    assert per_class[0][:3] == ["class", "variant", "precision"] and len(per_class) == 1 + 10 * 2


def test_ham_folder_with_lesion_split_and_operating_point(tmp_path, capsys):
    make_ham(tmp_path / "ham", lesions_per_class=(6, 6, 6))
    tiny_bundle(tmp_path / "tiny", classes=3, size=16, labels=["bkl", "mel", "nv"])
    code = main(
        [
            "evaluate", "--model", str(tmp_path / "tiny"), "--data", str(tmp_path / "ham"), "--split", "test",
            "--seed", "2", "--thresholds-from", "val", "--operating-point", "sensitivity:mel=0.9",
            "--csv", str(tmp_path / "m.csv"),
        ]
    )  # fmt: skip
    assert code == 0
    assert "operating point (sensitivity of mel" in capsys.readouterr().out
    values = {(r[1], r[2]): float(r[3]) for r in _rows(tmp_path / "m.csv")[1:]}
    assert values[("target_sensitivity", "mel")] == 0.9 and ("threshold", "mel") in values
    assert ("recall@operating_point", "mel") in values


def test_usage_and_input_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", "default", "--split", "dev"])
    assert exc.value.code == 2
    capsys.readouterr()
    assert main(["evaluate", "--model", "default", "--data", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset not found" in err[0]
    assert main(["evaluate", "--model", "default", "--corruptions", "fog"]) == 1
    assert "unknown corruption 'fog'" in capsys.readouterr().err


def test_gradcam_command(tmp_path, capsys, int4):
    png, npy = tmp_path / "cam.png", tmp_path / "cam.npy"
    image = str(SAMPLES_DIR / "digit_3.png")
    assert (
        main(
            ["gradcam", "--model", "default", "--compare", int4, image, "--out", str(png), "--npy", str(npy), "--json"]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["layer"] == "conv4" and [m["class"] for m in data["maps"]] == ["3", "3"]
    assert data["maps"][0]["correlation_with_reference"] == pytest.approx(1.0)
    maps = np.load(npy)
    assert maps.shape == (2, 28, 28) and maps.max() <= 1.0
    assert Image.open(png).format == "PNG"
    assert main(["gradcam", "--model", "default", image, "--list-layers"]) == 0
    assert "conv4" in capsys.readouterr().out
    assert main(["gradcam", "--model", "default", image, "--class", "cat"]) == 1
    assert "no class 'cat'" in capsys.readouterr().err
