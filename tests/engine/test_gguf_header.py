"""The pure-Python GGUF header check: files gguf-py's writer makes pass; damaged ones give one line."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402

from engine.core.errors import UserError
from engine.llm.gguf_header import check_gguf_header  # noqa: E402
from tests.gguf_fixtures import write_gguf  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _file(tmp_path) -> Path:
    path = tmp_path / "ok.gguf"
    w = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    kv = {"llama.block_count": 1, "tokenizer.ggml.tokens": ["a", "bb", "ccc"], "general.name": "tiny"}
    write_gguf(path, "llama", {"a": (w, T.Q4_K), "b": (w, T.F16)}, kv)
    return path


def test_files_from_gguf_py_pass_and_match_its_reader(tmp_path):
    import gguf

    path = _file(tmp_path)
    header = check_gguf_header(path)
    reader = gguf.GGUFReader(str(path))
    assert header.tensor_count == len(reader.tensors) == 2
    assert header.kv_count == len(reader.fields) - 3  # gguf-py lists the version and both counts as fields
    assert header.data_offset == reader.data_offset


def _one_line(exc: pytest.ExceptionInfo, name: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and name in text
    return text


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda b: b"GGUX" + b[4:], "does not start with 'GGUF'"),
        (lambda b: b[:4] + struct.pack("<I", 9) + b[8:], "version 9"),
        (lambda b: b[:8] + struct.pack("<Q", 2**50) + b[16:], "tensor infos"),
        (lambda b: b[:16] + struct.pack("<Q", 2**50) + b[24:], "key/value pairs"),
        (lambda b: b[: len(b) - 100], "runs past the end"),
        (lambda b: b[:20], "only 20 bytes"),
    ],
)
def test_damaged_headers_give_one_line_naming_the_file(tmp_path, damage, words):
    path = _file(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError) as exc:
        check_gguf_header(path)
    assert words in _one_line(exc, "ok.gguf")


def test_an_array_longer_than_the_file_is_refused(tmp_path):
    path = tmp_path / "arr.gguf"
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    key = b"tokenizer.ggml.tokens"
    body += struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, 2**40)  # an array of 2**40 strings
    path.write_bytes(body)
    with pytest.raises(UserError) as exc:
        check_gguf_header(path)
    assert "tokenizer.ggml.tokens" in _one_line(exc, "arr.gguf")


def test_a_44_byte_file_with_a_key_of_2_to_the_40_bytes_is_one_line_from_the_cli(tmp_path):
    path = tmp_path / "evil.gguf"
    data = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", 2**40) + b"\0" * 12
    assert len(data) == 44
    path.write_bytes(data)
    run = subprocess.run(
        [sys.executable, "-X", "faulthandler", "main.py", "info", "--model", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"},
    )
    assert run.returncode == 1, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "evil.gguf" in lines[0] and "runs past the end" in lines[0], run.stderr
