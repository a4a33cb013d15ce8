"""The service's engine thread: order, micro-batching, bounds, shutdown; and the pieces it uses.

No FastAPI here: these run without the 'serve' extra.
"""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from engine.core.errors import UserError
from engine.image.bundle import load_bundle
from engine.image.data.images import decode_image_bytes, load_image
from engine.serve.backends import CLASSIFIER, LANGUAGE_MODEL, model_kind, preprocess_upload
from engine.serve.config import exposure_warning, is_loopback, url_for
from engine.serve.generation import StopMatcher
from engine.serve.worker import ServiceBusy, ServiceStopped
from tests.serve.conftest import SAMPLES, start_worker


@pytest.fixture(scope="module")
def prep():
    return load_bundle("default").preprocessing


def _images(prep, n):
    return [prep(load_image(p)) for p in SAMPLES[:n]]


def _gate(worker):
    """Block the engine thread until the returned event is set (a request already running)."""
    entered, release = threading.Event(), threading.Event()

    def hold(_backend):
        entered.set()
        release.wait(10)

    worker.call(hold)
    assert entered.wait(10)
    return release


def test_requests_run_in_arrival_order_and_queued_classifies_share_a_batch(prep, predict_reference):
    worker = start_worker("default", batch_window_ms=0, max_batch=32)
    try:
        images = _images(prep, 5)
        release = _gate(worker)
        first = [worker.classify(x, 3) for x in images[:3]]
        marker = worker.call(lambda _b: worker.stats().served)  # runs between the two batches
        second = [worker.classify(x, 3) for x in images[3:]]
        release.set()
        results = [f.result(10) for f in first + second]
        assert marker.result(10) == 3  # the call saw exactly the first batch served
        assert [r.sequence for r in results] == [1, 2, 3, 4, 5]
        assert [r.batch_size for r in results] == [3, 3, 3, 2, 2]
        stats = worker.stats()
        assert (stats.batches, stats.largest_batch, stats.served) == (2, 3, 5)
        # Batched results are each image's own: the same as `main.py predict` image by image.
        for path, r in zip(SAMPLES[:5], results, strict=True):
            ref = predict_reference[path.name]
            assert [p.label for p in r.predictions] == [p["label"] for p in ref]
            np.testing.assert_allclose(
                [p.probability for p in r.predictions], [p["probability"] for p in ref], atol=1e-6
            )
    finally:
        assert worker.stop()


def test_max_batch_splits_the_queue_and_top_k_is_per_request(prep):
    worker = start_worker("default", batch_window_ms=0, max_batch=2)
    try:
        x = _images(prep, 1)[0]
        release = _gate(worker)
        futures = [worker.classify(x, k) for k in (1, 2, 3, 4, 10)]
        release.set()
        results = [f.result(10) for f in futures]
        assert [r.batch_size for r in results] == [2, 2, 2, 2, 1]
        assert [len(r.predictions) for r in results] == [1, 2, 3, 4, 10]
        probs = [p.probability for p in results[-1].predictions]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1.0) < 1e-9
    finally:
        worker.stop()


def test_a_full_queue_answers_busy_and_stop_fails_what_waits(prep):
    worker = start_worker("default", max_queue=2)
    x = _images(prep, 1)[0]
    release = _gate(worker)
    waiting = [worker.classify(x, 1), worker.classify(x, 1)]
    with pytest.raises(ServiceBusy, match="busy"):
        worker.classify(x, 1)
    worker.request_stop()
    release.set()
    assert worker.stop(10)
    for f in waiting:
        with pytest.raises(ServiceStopped):
            f.result(5)
    with pytest.raises(ServiceStopped):
        worker.classify(x, 1)
    assert not worker.stats().alive


def test_a_model_that_cannot_load_fails_start(tmp_path):
    from engine.serve.worker import InferenceWorker

    worker = InferenceWorker(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="model not found"):
        worker.start().result(10)
    assert worker.stop(5)


def test_model_kind(tmp_path, tiny_lm_dir):
    assert model_kind("default") == CLASSIFIER
    assert model_kind(str(tiny_lm_dir)) == LANGUAGE_MODEL
    assert model_kind("mlx-community/some-model-4bit") == LANGUAGE_MODEL  # a hub id (not fetched here)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(UserError, match="neither a model bundle nor an mlx-lm"):
        model_kind(str(tmp_path))
    with pytest.raises(UserError, match="not found"):
        model_kind(str(tmp_path / "missing"))


def test_uploads_are_decoded_defensively(prep):
    with pytest.raises(UserError, match=r"notes\.txt: not an image file"):
        decode_image_bytes(b"just some text\n", "notes.txt")
    with pytest.raises(UserError, match="empty upload"):
        decode_image_bytes(b"", "blank.png")
    png = SAMPLES[0].read_bytes()
    with pytest.raises(UserError, match="truncated or corrupt"):
        decode_image_bytes(png[: len(png) // 2], "half.png")
    # The same pixels as reading the file: uploads and `predict` see identical input.
    np.testing.assert_array_equal(preprocess_upload(png, "d.png", prep), prep(load_image(SAMPLES[0])))
    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (255, 255, 255, 128)).save(buf, format="PNG")
    assert preprocess_upload(buf.getvalue(), "rgba.png", prep).shape == (*prep.input_size, prep.channels)


@pytest.mark.parametrize(
    ("stops", "pieces", "sent", "hit"),
    [
        ((), ["ab", "c"], ["ab", "c"], False),
        (("END",), ["hello E", "N", "D tail"], ["hello ", "", ""], True),  # held back until decided
        (("END",), ["hello E", "x"], ["hello ", "Ex"], False),  # not a stop after all: released
        (("\n\n", "###"), ["a\n", "b#", "##c"], ["a", "\nb", ""], True),
        (("ab",), ["xxa"], ["xx"], False),  # then flush() returns the held "a"
    ],
)
def test_stop_matcher(stops, pieces, sent, hit):
    m = StopMatcher(stops)
    out, stopped = [], False
    for piece in pieces:
        text, stopped = m.feed(piece)
        out.append(text)
        if stopped:
            break
    assert out == sent and stopped is hit
    if not hit and stops == ("ab",):
        assert m.flush() == "a"


def test_loopback_and_exposure_warning():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host) and exposure_warning(host) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "myhost.example"):
        assert not is_loopback(host)
        assert "reachable from other machines" in exposure_warning(host)
    assert url_for("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert url_for("::1", 80) == "http://[::1]:80"
