"""Fixtures for the inference service: started engine threads, apps, a tiny language model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core.paths import SAMPLES_DIR

SAMPLES = sorted(SAMPLES_DIR.glob("*.png"))


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    from tests.serve.tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def predict_reference():
    """`python main.py predict --model default SAMPLES --top-k 3 --json`, run through the CLI entry point."""
    import contextlib
    import io

    from engine.cli import main as cli_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["predict", "--model", "default", *map(str, SAMPLES), "--top-k", "3", "--json"]) == 0
    doc = json.loads(out.getvalue())
    return {Path(p["input"]).name: p["top_k"] for p in doc["predictions"]}


def start_worker(spec: str, **kw):
    from engine.serve.worker import InferenceWorker

    worker = InferenceWorker(spec, **kw)
    worker.start().result(timeout=120)
    return worker


def sse_events(lines) -> list:
    """The JSON payloads of `data:` lines up to and including the literal [DONE] (kept as a string)."""
    events = []
    for line in lines:
        if not line.startswith("data: "):
            assert line == "" or line.startswith(":"), f"unexpected SSE line {line!r}"
            continue
        payload = line[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
        if payload == "[DONE]":
            break
    return events
