"""`intsim`: full-integer simulation from the command line, calibrated on an unlabelled folder."""

from __future__ import annotations

import csv
import json

import pytest

from engine.cli import main
from tests.cli.test_calibration_without_labels import photo_folder, run

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def mobilenet_bundle(tmp_path_factory):
    from tests.torchvision_ref import torchvision

    d = tmp_path_factory.mktemp("mnv2-bundle")
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.35).eval()
    torch.save(net.state_dict(), d / "mnv2.pth")
    labels = ",".join(str(i) for i in range(10))
    rc = main(["import", "--arch", "mobilenet_v2", "--weights", str(d / "mnv2.pth"), "--labels", labels,
               "--input-size", "32", "--preprocess", "unit,resize=stretch", "--out", str(d / "fp32")])  # fmt: skip
    assert rc == 0
    return str(d / "fp32")


def test_intsim_on_unlabelled_folder_writes_the_per_tensor_report(tmp_path, capsys, mobilenet_bundle):
    folder = photo_folder(tmp_path)
    text = run(
        capsys, "intsim", "--model", mobilenet_bundle, "--data", "default", "--limit", "24",
        "--calib-data", str(folder), "--calib", "8", "--observer", "percentile", "--report-images", "4",
        "--layers-csv", str(tmp_path / "layers.csv"), "--json",
    )  # fmt: skip
    res = json.loads(text)
    assert res["calibration_images"] == 8 and res["images"] == 24
    assert res["float_accuracy"] is not None and 0 <= res["top1_agreement"] <= 1
    assert res["mean_abs_logit_error"] > 0
    with open(tmp_path / "layers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    kinds = {(r["kind"], r["op"]) for r in rows}
    assert ("activation", "add") in kinds and ("weights", "conv") in kinds
    errs = [float(r["isolated_logit_error"]) for r in rows]
    assert errs == sorted(errs, reverse=True)


def test_intsim_table_and_bad_observer(tmp_path, capsys, mobilenet_bundle):
    folder = photo_folder(tmp_path)
    text = run(
        capsys, "intsim", "--model", mobilenet_bundle, "--limit", "8", "--calib-data", str(folder),
        "--calib", "4", "--report-images", "2", "--top", "3",
    )  # fmt: skip
    assert "full-integer" in text and "costliest tensors" in text
    rc = main(["intsim", "--model", mobilenet_bundle, "--calib-data", str(folder), "--observer", "kl"])
    assert rc == 1
    assert "unknown observer 'kl'" in capsys.readouterr().err
