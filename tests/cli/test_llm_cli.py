"""The language-model command line: evaluate --text, quantize, benchmark, info, generate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_json(capsys, *args) -> dict:
    assert main([*map(str, args)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def sample_text(tmp_path_factory) -> Path:
    """A WikiText-2-style raw file (headings, blank lines) from the held-out excerpt."""
    from engine.llm.detect import DEFAULT_TEXT

    body = DEFAULT_TEXT.read_text(encoding="utf-8")[:3000]
    p = tmp_path_factory.mktemp("text") / "wiki.test.raw"
    p.write_text(f" \n = Moby-Dick = \n \n {body} \n \n = = The Chase = = \n", encoding="utf-8")
    return p


def test_evaluate_text_json_matches_the_engine_and_is_stored(capsys, sample_text):
    from engine.llm.loader import load_language_model
    from engine.llm.perplexity import perplexity
    from engine.measure.results import ResultsStore

    out = run_json(capsys, "evaluate", "--model", "default-lm", "--text", sample_text, "--context", "128", "--json")
    lm = load_language_model("default-lm")
    ids = np.array(lm.encode(sample_text.read_text(encoding="utf-8")))
    ref = perplexity(lm, ids, 128)
    assert out["perplexity"] == pytest.approx(ref.perplexity, rel=1e-6)
    assert out["tokens"] == len(ids) and out["context"] == 128 and "non-overlapping" in out["definition"]
    (run,) = [r for r in ResultsStore().list() if r.kind == "evaluate"]
    assert (run.model_name, run.dataset, run.recipe) == ("default-lm", "wiki.test.raw", "fp32")
    assert run.metrics["perplexity"] == pytest.approx(ref.perplexity)


def test_quantize_then_compare_variants_with_deltas(capsys, tmp_path, sample_text):
    out_dir = tmp_path / "int3"
    assert main(["quantize", "--model", "default-lm", "--recipe", "int3", "--out", str(out_dir)]) == 0
    assert "bits/weight" in capsys.readouterr().out
    info = run_json(capsys, "info", "--model", out_dir, "--json")
    assert info["recipe"] == "int3" and info["quantization"]["bits"] == 3 and 3.0 < info["bits_per_weight"] < 5.0
    out = run_json(
        capsys,
        "evaluate",
        "--model",
        "default-lm",
        "--compare",
        out_dir,
        "--text",
        sample_text,
        "--context",
        "128",
        "--json",
    )
    base, q = out["comparison"]
    assert base["delta"] == 0.0 and q["recipe"] == "int3"
    assert q["delta"] == pytest.approx(q["perplexity"] - base["perplexity"]) and q["delta"] > 0


def test_benchmark_and_info_on_the_default_lm(capsys):
    b = run_json(
        capsys,
        "benchmark",
        "--model",
        "default-lm",
        "--prompt-tokens",
        "16",
        "--gen-tokens",
        "8",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--json",
    )
    for key in ("prompt_tps", "generation_tps", "ttft_ms", "peak_memory_bytes"):
        assert b[key] > 0
    info = run_json(capsys, "info", "--model", "default-lm", "--json")
    assert info["kind"] == "language" and info["model_type"] == "llama" and info["bits_per_weight"] == 32.0


def test_generate_json_is_reproducible(capsys):
    args = [
        "generate",
        "--model",
        "default-lm",
        "--prompt",
        "The sea",
        "--max-tokens",
        "12",
        "--temp",
        "0.8",
        "--seed",
        "3",
        "--json",
    ]
    a = run_json(capsys, *args)
    b = run_json(capsys, *args)
    assert a[0]["text"] == b[0]["text"] and a[0]["generated_tokens"] >= 1


@pytest.mark.slow
def test_quantized_output_works_with_mlx_lm_generate_command_line(tmp_path):
    """The real subprocess path: main.py quantize, then mlx-lm's own CLI on the folder (slow: two processes)."""
    env = {**os.environ}
    q = tmp_path / "int4"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "quantize",
            "--model",
            "default-lm",
            "--recipe",
            "int4",
            "--out",
            str(q),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "generate",
            "--model",
            str(q),
            "--prompt",
            "Call me",
            "--max-tokens",
            "8",
            "--ignore-chat-template",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Generation:" in proc.stdout


def test_bad_text_file_is_one_line_exit_1(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "evaluate",
            "--model",
            "default-lm",
            "--text",
            str(tmp_path / "no.txt"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no.txt" in lines[0] and "not found" in lines[0]
