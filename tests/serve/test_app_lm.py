"""The OpenAI-compatible API for language models, on a tiny random llama, against mlx-lm itself."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from engine.serve.app import create_app  # noqa: E402
from engine.serve.config import ServeSettings  # noqa: E402
from tests.serve.conftest import sse_events, start_worker  # noqa: E402

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    worker = start_worker(str(tiny_lm_dir))
    with TestClient(
        create_app(worker, ServeSettings(model=str(tiny_lm_dir), max_tokens_limit=64)), base_url="http://127.0.0.1"
    ) as c:
        yield c
    assert worker.stop()


@pytest.fixture(scope="module")
def reference(tiny_lm_dir):
    """Greedy generation by mlx-lm directly (this thread, its own copy of the model)."""
    import mlx_lm
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = mlx_lm.load(str(tiny_lm_dir))

    def generate(tokens, max_tokens):
        return mlx_lm.generate(model, tokenizer, tokens, max_tokens=max_tokens, sampler=make_sampler(0.0))

    chat_tokens = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)
    return {"generate": generate, "tokenizer": tokenizer, "chat_tokens": chat_tokens}


def test_chat_completion_matches_mlx_lm(lm, reference):
    r = lm.post("/v1/chat/completions", json={"model": "anything", "messages": MESSAGES, "max_tokens": 12})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = reference["generate"](reference["chat_tokens"], 12)
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "tiny-lm0"
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": expected}
    assert choice["finish_reason"] == "length"
    n_prompt = len(reference["chat_tokens"])
    assert body["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 12, "total_tokens": n_prompt + 12}


def test_streamed_chat_is_sse_and_adds_up_to_the_same_text(lm, reference):
    expected = reference["generate"](reference["chat_tokens"], 20)
    payload = {"messages": MESSAGES, "max_tokens": 20, "stream": True, "stream_options": {"include_usage": True}}
    with lm.stream("POST", "/v1/chat/completions", json=payload) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert len([d for d in deltas if d]) > 5  # streamed piece by piece, not in one lump
    assert "".join(deltas) == expected
    final = [c for c in chunks if c["choices"]][-1]["choices"][0]
    assert final["finish_reason"] == "length" and final["delta"] == {}
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 20


def test_text_completions_stream_and_not(lm, reference):
    tok = reference["tokenizer"]
    prompt = "the quick brown fox"
    expected = reference["generate"](tok.encode(prompt), 10)
    body = lm.post("/v1/completions", json={"prompt": prompt, "max_tokens": 10}).json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == expected
    assert body["usage"]["prompt_tokens"] == len(tok.encode(prompt))
    with lm.stream("POST", "/v1/completions", json={"prompt": prompt, "max_tokens": 10, "stream": True}) as r:
        events = sse_events(r.iter_lines())
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == expected
    # Token ids work as a prompt too.
    ids = tok.encode(prompt)
    body = lm.post("/v1/completions", json={"prompt": ids, "max_tokens": 10}).json()
    assert body["choices"][0]["text"] == expected


def test_stop_strings_cut_the_text_in_both_modes(lm, reference):
    full = reference["generate"](reference["chat_tokens"], 30)
    stop = next(
        full[i : i + 2] for i in range(4, len(full) - 2) if full[i : i + 2].isprintable() and full[i : i + 2].strip()
    )
    expected = full[: full.find(stop)]
    body = lm.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 30, "stop": [stop]}).json()
    assert body["choices"][0]["message"]["content"] == expected
    assert body["choices"][0]["finish_reason"] == "stop"
    payload = {"messages": MESSAGES, "max_tokens": 30, "stop": stop, "stream": True}
    with lm.stream("POST", "/v1/chat/completions", json=payload) as r:
        events = sse_events(r.iter_lines())
    chunks = [e for e in events[:-1] if e["choices"]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_bad_language_model_requests(lm):
    def error(r, status, needle):
        assert r.status_code == status, r.text
        assert needle in r.json()["error"]["message"]

    error(lm.post("/v1/chat/completions", json={"messages": []}), 422, "messages")
    error(lm.post("/v1/chat/completions", json={"messages": [{"role": "wizard", "content": "x"}]}), 422, "role")
    error(lm.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 65}), 400, "at most 64")
    error(lm.post("/v1/chat/completions", json={"messages": MESSAGES, "temperature": -1}), 422, "temperature")
    error(lm.post("/v1/completions", json={"prompt": [10**6]}), 400, "outside the vocabulary")
    error(lm.post("/v1/completions", json={"prompt": ""}), 400, "prompt is empty")
    error(lm.post("/v1/completions", json={}), 422, "prompt")
    error(lm.post("/v1/classify", json={"image": ""}), 404, "language model")
    assert lm.get("/health").json()["status"] == "ok"


def test_openapi_document_for_a_language_model(lm):
    from openapi_spec_validator import validate

    doc = lm.get("/openapi.json").json()
    validate(doc)
    assert set(doc["paths"]) == {"/health", "/v1/models", "/v1/chat/completions", "/v1/completions"}
    ok = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"]["$ref"].endswith("/ChatCompletion")
    assert ok["text/event-stream"]["schema"]["$ref"].endswith("/ChatCompletionChunk")
    req = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert req["$ref"].endswith("/ChatCompletionRequest")
    assert {"messages", "max_tokens", "temperature", "stream", "stop"} <= set(
        doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    )


def test_a_tokenizer_without_chat_template_gets_a_plain_transcript(tmp_path):
    import mlx_lm

    from engine.serve.lm_backend import plain_chat_prompt
    from tests.serve.tiny_lm import make_tiny_lm

    path = make_tiny_lm(tmp_path / "plain", chat_template=False)
    worker = start_worker(str(path))
    try:
        with TestClient(create_app(worker, ServeSettings(model=str(path))), base_url="http://127.0.0.1") as c:
            body = c.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 3}).json()
    finally:
        worker.stop()
    _, tokenizer = mlx_lm.load(str(path))
    transcript = plain_chat_prompt(tuple((m["role"], m["content"]) for m in MESSAGES))
    assert transcript == "SYSTEM: be brief\nUSER: hello world\nASSISTANT:"
    assert body["usage"]["prompt_tokens"] == len(tokenizer.encode(transcript))
