"""import_file picks the importer by suffix, honours cancel, and applies preprocessing options."""

from __future__ import annotations

import pytest

from engine.core.errors import Cancelled, UserError
from engine.image.importers.dispatch import check_importable, import_file
from engine.jobs.image import ImportJob
from engine.runtime import JobContext, Workspace
from tests.importers.reference import load_reference, reference_weights, save_safetensors


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    ref = load_reference("torchvision_resnet18")
    return save_safetensors(reference_weights(ref), tmp_path_factory.mktemp("ckpt") / "r18.safetensors")


def test_unknown_suffix_and_missing_arch(tmp_path, r18):
    odd = tmp_path / "model.tflite"
    odd.write_bytes(b"x")
    with pytest.raises(UserError, match="unsupported checkpoint type '.tflite'"):
        import_file(odd)
    assert "unsupported checkpoint type" in check_importable(odd)
    assert check_importable(r18) is None
    with pytest.raises(UserError, match="choose one with --arch"):
        import_file(r18)


def test_cancel_stops_the_import(r18):
    with pytest.raises(Cancelled):
        import_file(r18, "resnet18", should_stop=lambda: True)


def test_import_job_reports_progress_and_saves(tmp_path, r18):
    seen = []
    ctx = JobContext(progress=lambda f, m: seen.append(f))
    card = ImportJob("resnet18", str(r18), str(tmp_path / "B"), preprocess="inception", input_size="128x96").run(
        ctx, Workspace()
    )
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 4
    assert card.input_shape == (128, 96, 3) and card.preprocessing["scale"] == "symmetric"
    assert card.macs > 0 and (tmp_path / "B" / "config.json").exists()
