"""The HTTP API for image classifiers, through FastAPI's TestClient (no socket)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402

from engine.serve.app import create_app  # noqa: E402
from engine.serve.config import ServeSettings  # noqa: E402
from tests.serve.conftest import SAMPLES, start_worker  # noqa: E402

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def client():
    worker = start_worker("default")
    with TestClient(create_app(worker, ServeSettings(max_body_bytes=LIMIT)), base_url="http://127.0.0.1") as c:
        yield c
    assert worker.stop()


def _check_against_predict(body, ref, top_k=3):
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in ref[:top_k]]
    assert [p["index"] for p in body["predictions"]] == [p["index"] for p in ref[:top_k]]
    np.testing.assert_allclose(
        [p["probability"] for p in body["predictions"]], [p["probability"] for p in ref[:top_k]], atol=1e-6
    )


def test_multipart_and_base64_match_predict_on_every_sample(client, predict_reference):
    for path in SAMPLES:
        ref = predict_reference[path.name]
        r = client.post(
            "/v1/classify", files={"file": (path.name, path.read_bytes(), "image/png")}, data={"top_k": "3"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "default-small-cnn"
        _check_against_predict(body, ref)
        assert body["latency_ms"] >= body["inference_ms"] > 0 and body["batch_size"] >= 1
        b64 = base64.b64encode(path.read_bytes()).decode()
        r = client.post("/v1/classify", json={"image": f"data:image/png;base64,{b64}", "top_k": 2})
        assert r.status_code == 200, r.text
        _check_against_predict(r.json(), ref, top_k=2)
    # Each sample is labelled with its digit; the shipped model gets them right.
    for path in SAMPLES:
        assert predict_reference[path.name][0]["label"] == path.stem.split("_")[1]


def test_health_and_models(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["kind"] == "image-classifier" and h["model"] == "default-small-cnn"
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == "default-small-cnn" and card["recipe"] == "fp32"
    assert card["labels"] == [str(i) for i in range(10)]


def _error(r, status, *needles):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and isinstance(err["type"], str)
    for needle in needles:
        assert needle in err["message"], err["message"]
    return err


def test_bad_requests_get_4xx_with_a_json_error(client):
    text = b"this is a shopping list, not a picture\n"
    _error(
        client.post("/v1/classify", files={"file": ("list.txt", text, "text/plain")}), 400, "list.txt", "not an image"
    )
    _error(client.post("/v1/classify", json={"image": base64.b64encode(text).decode()}), 400, "image", "not an image")
    _error(client.post("/v1/classify", json={"image": "%%% not base64 %%%"}), 400, "not valid base64")
    png = SAMPLES[0].read_bytes()
    _error(client.post("/v1/classify", files={"file": ("d.png", png[:100], "image/png")}), 400, "d.png", "truncated")
    _error(client.post("/v1/classify", files={"other": ("d.png", png, "image/png")}), 400, "multipart field 'file'")
    _error(client.post("/v1/classify", files={"file": ("d.png", png)}, data={"top_k": "0"}), 422, "top_k")
    _error(client.post("/v1/classify", json={"top_k": 3}), 422, "image", "Field required")
    _error(
        client.post("/v1/classify", content=b"{broken", headers={"content-type": "application/json"}),
        422,
        "not valid JSON",
    )
    _error(client.post("/v1/classify", content=png, headers={"content-type": "image/png"}), 415, "multipart/form-data")
    _error(client.get("/v1/classify"), 405)
    _error(client.get("/nowhere"), 404, "/nowhere")
    _error(client.post("/v1/chat/completions", json={"messages": []}), 404, "image classifier", "/v1/classify")


def test_request_size_is_bounded(client):
    big = b"\x89PNG" + bytes(LIMIT)
    _error(client.post("/v1/classify", files={"file": ("big.png", big, "image/png")}), 413, f"{LIMIT:,}-byte limit")

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(8):
            yield bytes(LIMIT // 4)

    _error(client.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"}), 413, "limit")
    assert client.get("/health").json()["status"] == "ok"  # and the service carries on


def test_a_quantized_variant_is_served_like_predict_reports_it(tmp_path):
    import contextlib
    import io
    import json

    from engine.cli import main as cli_main

    out = tmp_path / "int8"
    assert cli_main(["quantize", "--model", "default", "--recipe", "int8", "--out", str(out)]) == 0
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(["predict", "--model", str(out), str(SAMPLES[3]), "--top-k", "3", "--json"]) == 0
    ref = json.loads(buf.getvalue())["predictions"][0]["top_k"]
    worker = start_worker(str(out))
    try:
        with TestClient(create_app(worker, ServeSettings()), base_url="http://127.0.0.1") as c:
            assert c.get("/v1/models").json()["data"][0]["recipe"] == "int8"
            r = c.post("/v1/classify", files={"file": ("x.png", SAMPLES[3].read_bytes())}, data={"top_k": 3})
            _check_against_predict(r.json(), ref)
    finally:
        worker.stop()


def test_openapi_document_is_valid_and_describes_both_upload_forms(client):
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").json()
    validate(doc)
    assert set(doc["paths"]) == {"/health", "/v1/models", "/v1/classify"}
    post = doc["paths"]["/v1/classify"]["post"]
    content = post["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    schemas = doc["components"]["schemas"]
    assert set(schemas["ClassifyUpload"]["properties"]) == {"file", "top_k"}
    assert schemas["ClassifyJSONRequest"]["required"] == ["image"]
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ClassifyResponse")
    for status in ("400", "413", "415", "422", "503"):
        assert post["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
