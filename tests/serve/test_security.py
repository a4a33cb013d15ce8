"""Who may talk to the service, and what a request may cost.

Host and Origin checks stop web pages (cross-origin POSTs, DNS rebinding); an optional API key;
seeds validated; decoded pixels capped per request with bounded RSS; prompts held to the model's
context; a client that leaves cancels its prefill; Ctrl+C during generation exits 0 within 2 s.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
try:  # transformers' tokenizer import loads torchvision; the PyPI wheel needs this beside CPU torch
    import tests.torchvision_ref  # noqa: F401
except Exception:
    pass
from fastapi.testclient import TestClient  # noqa: E402

from engine.serve.app import create_app  # noqa: E402
from engine.serve.config import ServeSettings  # noqa: E402
from tests.serve.conftest import SAMPLES, start_worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def classifier_worker():
    worker = start_worker("default")
    yield worker
    worker.stop()


def _client(worker, **settings) -> TestClient:
    return TestClient(create_app(worker, ServeSettings(**settings)), base_url=LOCAL)


def _classify(c: TestClient, **kw):
    path = SAMPLES[0]
    return c.post("/v1/classify", files={"file": (path.name, path.read_bytes())}, data={"top_k": 1}, **kw)


# -- Host, Origin, API key ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "192.168.1.20"])
def test_foreign_host_is_refused(classifier_worker, host):
    with _client(classifier_worker) as c:
        for r in (c.get("/v1/models", headers={"Host": host}), _classify(c, headers={"Host": host})):
            assert r.status_code == 421, r.text
            assert "is not this service's address" in r.json()["error"]["message"]


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"])
def test_loopback_hosts_are_served(classifier_worker, host):
    with _client(classifier_worker) as c:
        assert c.get("/v1/models", headers={"Host": host}).status_code == 200


def test_wildcard_bind_takes_address_literals_but_not_names(classifier_worker):
    with _client(classifier_worker, host="0.0.0.0") as c:
        assert c.get("/v1/models", headers={"Host": "192.168.1.20:8000"}).status_code == 200
        assert c.get("/v1/models", headers={"Host": "rebound.example:8000"}).status_code == 421


def test_cross_origin_post_is_refused_same_origin_and_plain_clients_work(classifier_worker):
    with _client(classifier_worker) as c:
        r = _classify(c, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "--allow-origin" in r.json()["error"]["message"]
        assert _classify(c, headers={"Origin": "null"}).status_code == 403
        # the service's own page (same scheme, host and port) and clients without Origin (curl, SDKs)
        assert _classify(c, headers={"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"}).status_code == 200
        assert _classify(c).status_code == 200


def test_allowed_origin_is_served_with_cors_headers(classifier_worker):
    app_origin = "http://localhost:5173"
    with _client(classifier_worker, allowed_origins=(app_origin,)) as c:
        pre = c.options("/v1/classify", headers={"Origin": app_origin, "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == app_origin
        r = _classify(c, headers={"Origin": app_origin})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == app_origin
        assert _classify(c, headers={"Origin": "http://localhost:6666"}).status_code == 403


def test_api_key_is_enforced_when_set(classifier_worker):
    key = "s3cret-key-for-tests"
    with _client(classifier_worker, api_key=key) as c:
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": key}):
            r = _classify(c, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
        assert c.get("/v1/models").status_code == 401
        assert _classify(c, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    with _client(classifier_worker) as c:  # no key configured: none needed
        assert _classify(c).status_code == 200


def test_serve_cli_takes_the_security_options():
    from engine.cli import parse
    from engine.serve.security_cli import security_settings

    _, args = parse(
        ["serve", "--model", "default", "--api-key", "k" * 12, "--allow-origin", "http://a:1", "--allow-origin", "*"]
    )
    settings = ServeSettings(**security_settings(args))
    assert settings.api_key == "k" * 12 and settings.allowed_origins == ("http://a:1", "*")
    from engine.serve.config import exposure_warning

    assert "--api-key" in exposure_warning("0.0.0.0") and exposure_warning("0.0.0.0", "k" * 12) is None


# -- decoded pixels -------------------------------------------------------------------------------

_RSS_SCRIPT = r"""
import json, threading
from pathlib import Path
from fastapi.testclient import TestClient
from engine.serve.app import create_app
from engine.serve.config import ServeSettings
from engine.serve.worker import InferenceWorker

big, small, pixels = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
worker = InferenceWorker("default")
worker.start().result(timeout=120)
with TestClient(create_app(worker, ServeSettings(max_image_pixels=pixels)), base_url="http://127.0.0.1") as c:
    assert c.post("/v1/classify", files={"file": (small.name, small.read_bytes())}).status_code == 200
    base = peak_rss()
    data, results = big.read_bytes(), []
    def post():
        r = c.post("/v1/classify", files={"file": (big.name, data)})
        results.append((r.status_code, r.json()))
    threads = [threading.Thread(target=post) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    peak = peak_rss()
worker.stop()
print(json.dumps({"base": base, "peak": peak, "results": results}))
"""


def _big_png_through_the_service(tmp_path, pixels: int) -> dict:
    from tests.reliability.hostile import PEAK_RSS_CODE, png16_large

    big = png16_large(tmp_path)
    assert big.stat().st_size < 2 * 1024 * 1024
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_CODE + _RSS_SCRIPT, str(big), str(SAMPLES[0]), str(pixels)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_large_16_bit_png_is_refused_by_the_pixel_cap_before_decoding(tmp_path):
    """Three concurrent 8000x7999 16-bit uploads (each 128 MB decoded, 1.25 GB before this fix)."""
    out = _big_png_through_the_service(tmp_path, ServeSettings().max_image_pixels)
    for status, body in out["results"]:
        assert status == 400
        assert body["error"]["message"].endswith("image is 8000x7999 pixels, over the 16,777,216-pixel limit")
    assert out["peak"] - out["base"] < 64 * 1024 * 1024, out


def test_large_16_bit_png_allowed_by_the_cap_decodes_with_bounded_memory(tmp_path):
    """With the cap raised, decodes run two at a time and the 16-bit scan never becomes float64."""
    out = _big_png_through_the_service(tmp_path, 64_000_000)
    assert [s for s, _ in out["results"]] == [200, 200, 200], out["results"]
    # Two decodes at once, each about 128 MB (PIL's 16-bit pixels) + 64 MB (8-bit) + a band of rows
    # (bench/hostile_inputs.py measured 407 MB); one float64 conversion alone took 1,162 MB.
    assert out["peak"] - out["base"] < 600 * 1024 * 1024, out


# -- language models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_context_lm(tmp_path_factory) -> Path:
    """The tests' tiny llama, wider and with a long stated context, so a long prompt takes seconds to prefill."""
    from tests.serve.tiny_lm import make_tiny_lm

    path = make_tiny_lm(tmp_path_factory.mktemp("long-lm"))
    cfg = json.loads((path / "config.json").read_text())
    cfg["max_position_embeddings"] = 65536
    (path / "config.json").write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def lm_client(long_context_lm):
    worker = start_worker(str(long_context_lm))
    with TestClient(create_app(worker, ServeSettings(model=str(long_context_lm))), base_url=LOCAL) as c:
        yield c
    worker.stop()


@pytest.mark.parametrize("seed", [-1, 1e23, 2**64, "x"])
def test_bad_seeds_get_422(lm_client, seed):
    r = lm_client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 2, "seed": seed})
    assert r.status_code == 422, r.text
    assert "seed" in r.json()["error"]["message"]


def test_good_seed_is_accepted(lm_client):
    r = lm_client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 2, "seed": 2**63 - 1})
    assert r.status_code == 200, r.text


def test_prompt_beyond_the_models_context_is_400(tiny_lm_dir):
    cfg = json.loads((tiny_lm_dir / "config.json").read_text())
    assert "max_position_embeddings" not in cfg  # the session model states none: only the service limit
    from engine.core.errors import UserError
    from engine.serve.lm_backend import MAX_PROMPT_TOKENS, check_prompt_length

    check_prompt_length(MAX_PROMPT_TOKENS, 10, None)
    with pytest.raises(UserError, match="at most 32,768"):
        check_prompt_length(MAX_PROMPT_TOKENS + 1, 10, None)
    with pytest.raises(UserError, match="the model's context holds 2,048"):
        check_prompt_length(2000, 100, 2048)


def test_prompt_limit_through_the_service(lm_client):
    r = lm_client.post("/v1/completions", json={"prompt": [5] * 40000, "max_tokens": 10})
    assert r.status_code == 400 and "accepts at most 32,768" in r.json()["error"]["message"], r.text


def test_default_lm_is_served():
    from engine.serve.backends import LANGUAGE_MODEL, model_kind

    assert model_kind("default-lm") == LANGUAGE_MODEL
    worker = start_worker("default-lm")
    try:
        with TestClient(create_app(worker, ServeSettings(model="default-lm")), base_url=LOCAL) as c:
            assert c.get("/v1/models").json()["data"][0]["kind"] == LANGUAGE_MODEL
            r = c.post("/v1/completions", json={"prompt": "Call me", "max_tokens": 3})
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
            # its config states max_position_embeddings 2048: prompt + max_tokens must fit
            r = c.post("/v1/completions", json={"prompt": [5] * 2000, "max_tokens": 100})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["message"] == (
                "the prompt has 2,000 tokens and max_tokens is 100, but the model's context holds 2,048; "
                "shorten the prompt or lower max_tokens"
            )
    finally:
        worker.stop()


def _raw_post(port: int, path: str, body: dict) -> socket.socket:
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    sock.sendall(head.encode() + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def _health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()


def test_long_prompt_cancelled_by_client_disconnect_frees_the_engine_within_1s(long_context_lm):
    from engine.serve.server import ServiceServer

    server = ServiceServer(ServeSettings(model=str(long_context_lm), host="127.0.0.1", port=0))
    server.start()
    assert server.wait(120).state == "running"
    port = int(server.url.rsplit(":", 1)[1])
    try:
        # 30k prompt tokens: seconds of prefill on this model (attention grows with the square).
        sock = _raw_post(port, "/v1/completions", {"prompt": [5] * 30000, "max_tokens": 200})
        deadline = time.monotonic() + 30
        while not _health(server.url)["busy"]:
            assert time.monotonic() < deadline, "the request never reached the engine"
            time.sleep(0.02)
        time.sleep(0.3)  # well inside the prefill
        sock.close()
        left = time.monotonic()
        while _health(server.url)["busy"]:
            assert time.monotonic() - left < 1.0, "the engine is still busy 1 s after the client left"
            time.sleep(0.02)
        health = _health(server.url)
        assert health["cancelled"] == 1 and health["generations"] == 0, health
        # and the engine serves the next request
        r = httpx.post(f"{server.url}/v1/completions", json={"prompt": "hello", "max_tokens": 2}, timeout=30)
        assert r.status_code == 200
    finally:
        assert server.stop(10)


def test_sigint_during_generation_exits_0_within_2s(long_context_lm):
    code = (
        "import sys\ntry:\n    import tests.torchvision_ref\nexcept Exception:\n    pass\n"
        "from engine.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--model", str(long_context_lm), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving "), line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        port = int(url.rsplit(":", 1)[1])
        sock = _raw_post(port, "/v1/completions", {"prompt": [5] * 30000, "max_tokens": 2000})
        deadline = time.monotonic() + 30
        while not _health(url)["busy"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - sent
        sock.close()
        err = proc.stderr.read()
        assert rc == 0, err[-2000:]
        assert took < 2.0, f"took {took:.2f} s"
        assert "Traceback" not in err and "terminate called" not in err, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_disconnect_watch_keeps_events_in_order():
    """DisconnectWatch polls for the client without losing an event to a poll's timeout."""
    import asyncio

    from engine.serve.app import DisconnectWatch

    async def scenario():
        events: asyncio.Queue = asyncio.Queue()

        class StillThere:
            async def is_disconnected(self):
                return False

        watch = DisconnectWatch(events, StillThere(), threading.Event())
        loop = asyncio.get_running_loop()
        for i in range(5):
            loop.call_later(0.03 * i + 0.15, events.put_nowait, i)
        return [await watch.next() for _ in range(5)]

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]
