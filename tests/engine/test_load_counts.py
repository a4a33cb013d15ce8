"""A job reads each model from disk once, and a dropped image is decoded once (issue 14).

``engine.image.bundle.LOADS`` counts every bundle read from disk; ``Workspace.decodes`` and a
wrapper around the image decoder count decodes. Cold-load measurement is the one deliberate
reload: ``BenchmarkJob(cold_load=True)`` drops the cached copy to time a load from disk.
"""

from __future__ import annotations

import pytest

from engine.core.paths import DEFAULT_MODEL_DIR, SAMPLES_DIR
from engine.image import bundle as bundle_module
from engine.image.benchmark import BenchmarkSettings
from engine.image.data import images as images_module
from engine.image.gradcam import GradCamJob
from engine.jobs.image import BenchmarkJob, PredictJob, QuantizeJob
from engine.runtime import JobContext, Workspace

DEFAULT = str(DEFAULT_MODEL_DIR.resolve())


@pytest.fixture
def loads(monkeypatch):
    monkeypatch.setattr(bundle_module, "LOADS", bundle_module.Counter())
    return bundle_module.LOADS


@pytest.fixture
def decodes(monkeypatch):
    calls: list[str] = []
    real = images_module._decode

    def counting(source, name):
        calls.append(str(name))
        return real(source, name)

    monkeypatch.setattr(images_module, "_decode", counting)
    return calls


def test_quantize_reads_the_source_once_and_the_variant_once(tmp_path, loads):
    ws = Workspace()
    out = tmp_path / "int4"
    QuantizeJob("default", "int4", str(out), store=False).run(JobContext(), ws)
    assert loads == {DEFAULT: 1, str(out.resolve()): 1}


def test_benchmark_after_quantize_reuses_the_loaded_variant(tmp_path, loads):
    ws = Workspace()
    out = tmp_path / "int8"
    QuantizeJob("default", "int8", str(out), store=False).run(JobContext(), ws)
    settings = BenchmarkSettings(batch_size=1, iters=3, warmup=1)
    BenchmarkJob(str(out), settings, cold_load=False, store=False).run(JobContext(), ws)
    assert loads[str(out.resolve())] == 1
    # Measuring a cold load is the one deliberate reload from disk.
    BenchmarkJob(str(out), settings, cold_load=True, store=False).run(JobContext(), ws)
    assert loads[str(out.resolve())] == 2


def test_a_drop_is_decoded_once_for_prediction_grad_cam_and_thumbnail(tmp_path, loads, decodes):
    ws = Workspace()
    variant = tmp_path / "int4"
    QuantizeJob("default", "int4", str(variant), store=False).run(JobContext(), ws)
    loads.clear()
    image = str(SAMPLES_DIR / "digit_3.png")
    models = (DEFAULT, str(variant))
    predicted = PredictJob(models, (image,)).run(JobContext(), ws)
    assert predicted.thumbnails[0].dtype.name == "uint8" and predicted.thumbnails[0].shape[-1] == 3
    cams = GradCamJob(models, image).run(JobContext(), ws)
    assert len(cams.maps) == 2
    assert decodes == [str(SAMPLES_DIR / "digit_3.png")], "one decode serves both models and both jobs"
    assert loads == {}, "both models stayed loaded from the quantize job"


def test_predict_of_two_models_reads_each_once(loads, decodes):
    ws = Workspace()
    images = tuple(str(SAMPLES_DIR / f"digit_{i}.png") for i in range(3))
    PredictJob((DEFAULT, DEFAULT), images).run(JobContext(), ws)
    PredictJob((DEFAULT,), images).run(JobContext(), ws)
    assert loads == {DEFAULT: 1}
    assert sorted(decodes) == sorted(images)
