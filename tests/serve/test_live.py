"""The service under a real uvicorn on a loopback port: concurrency, streaming, clean start and stop."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from engine.core.errors import UserError  # noqa: E402
from engine.serve.config import ServeSettings  # noqa: E402
from engine.serve.server import ServiceServer  # noqa: E402
from tests.serve.conftest import SAMPLES, sse_events  # noqa: E402


def _serve(**kw) -> ServiceServer:
    server = ServiceServer(ServeSettings(host="127.0.0.1", port=0, **kw))
    server.start()
    status = server.wait(60)
    assert status.state == "running", status
    assert status.url.startswith("http://127.0.0.1:") and status.warning is None
    return server


def _serve_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mqs-serve")]


def test_concurrent_clients_are_batched_and_each_gets_its_own_answer(predict_reference):
    server = _serve(model="default", batch_window_ms=100, max_batch=16)
    n_clients, per_client = 8, 3
    start = threading.Barrier(n_clients)
    answers: dict[tuple[int, int], dict] = {}

    def client(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            start.wait()
            for j in range(per_client):
                path = SAMPLES[(i + j) % len(SAMPLES)]
                r = c.post("/v1/classify", files={"file": (path.name, path.read_bytes())}, data={"top_k": 3})
                answers[i, j] = {"path": path, "status": r.status_code, "body": r.json()}

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(answers) == n_clients * per_client
        for a in answers.values():
            assert a["status"] == 200, a["body"]
            ref = predict_reference[a["path"].name]
            assert [p["label"] for p in a["body"]["predictions"]] == [p["label"] for p in ref]
            assert abs(a["body"]["predictions"][0]["probability"] - ref[0]["probability"]) < 1e-6
        health = httpx.get(f"{server.url}/health").json()
        assert health["served"] == n_clients * per_client
        # Eight clients released together within a 100 ms window share forward passes.
        assert health["largest_batch"] > 1 and health["batches"] < n_clients * per_client
        assert max(a["body"]["batch_size"] for a in answers.values()) == health["largest_batch"]
    finally:
        assert server.stop()
    assert server.status.state == "stopped"
    assert not _serve_threads()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=2)


def test_streaming_over_a_socket_and_a_client_that_leaves_stops_generation(tiny_lm_dir):
    server = _serve(model=str(tiny_lm_dir), max_tokens_limit=4096)
    try:
        payload = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": True}
        with httpx.Client(base_url=server.url, timeout=30) as c:
            with c.stream("POST", "/v1/chat/completions", json=payload) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                events = sse_events(r.iter_lines())
            assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"
            # A long generation whose client disconnects after two events is cancelled between tokens.
            long = {"prompt": "the quick brown fox", "max_tokens": 4096, "stream": True}
            with c.stream("POST", "/v1/completions", json=long) as r:
                lines = r.iter_lines()
                got = [next(lines) for _ in range(3)]
                assert got[0].startswith("data: ")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                h = c.get("/health").json()
                if h["cancelled"] == 1 and not h["busy"]:
                    break
                time.sleep(0.05)
            assert h["cancelled"] == 1 and not h["busy"], h
            assert h["generations"] == 1  # only the first, finished one
    finally:
        assert server.stop()
    assert not _serve_threads()


def test_a_port_in_use_is_a_one_line_error_before_anything_loads():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = ServiceServer(ServeSettings(model="default", host="127.0.0.1", port=port))
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}"):
            server.start()
    assert server.worker is None and not _serve_threads()


def test_stop_while_the_model_loads_and_a_model_that_fails(tmp_path):
    server = ServiceServer(ServeSettings(model="default", port=0))
    server.start()
    assert server.stop()  # whether or not the load had finished
    assert server.status.state == "stopped" and not _serve_threads()
    bad = ServiceServer(ServeSettings(model=str(tmp_path / "missing"), port=0))
    bad.start()
    status = bad.wait(30)
    assert status.state == "failed" and "model not found" in status.message
    assert bad.stop() and not _serve_threads()
