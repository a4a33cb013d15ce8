"""`python main.py serve`: a real subprocess on a loopback port, usage errors, and the missing extra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.cli import main as cli_main
from tests.serve.conftest import SAMPLES

ROOT = Path(__file__).resolve().parents[2]


def test_serve_subprocess_answers_and_stops_cleanly_on_ctrl_c(tmp_path, predict_reference):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", str(ROOT / "main.py"), "serve", "--model", "default", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MQS_DATA_DIR": str(tmp_path)},
    )
    watchdog = threading.Timer(60, proc.kill)  # a hung start must not hang the suite
    watchdog.start()
    try:
        line = proc.stdout.readline()  # blocks until the service is up (or the process died)
        assert line.startswith("serving default-small-cnn (image-classifier) at http://127.0.0.1:"), (
            line + proc.stderr.read()
        )
        url = line.split(" at ")[1].split()[0]
        assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"
        path = SAMPLES[7]
        r = httpx.post(f"{url}/v1/classify", files={"file": (path.name, path.read_bytes())}, data={"top_k": 3})
        ref = predict_reference[path.name]
        assert [p["label"] for p in r.json()["predictions"]] == [p["label"] for p in ref]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip().endswith("stopped")
    assert "Traceback" not in err and "Fatal Python error" not in err and "terminate called" not in err


def test_without_the_serve_extra_serve_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # `import fastapi` now raises ImportError
    t0 = time.perf_counter()
    assert cli_main(["serve", "--model", "default"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fastapi" in err
    assert 'pip install "mlx-quant-studio[serve]"' in err
    assert time.perf_counter() - t0 < 2  # said before loading anything


def test_the_cli_and_the_engine_thread_do_not_import_the_web_stack():
    code = (
        "import sys; from engine.cli import command_parser; command_parser('serve'); import engine.serve.worker, "
        "engine.serve.server; print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "rc", "needle"),
    [
        (["serve"], 2, "--model"),
        (["serve", "--model", "default", "--port", "70000"], 2, "between 0 and 65535"),
        (["serve", "--model", "default", "--max-batch", "0"], 2, "at least 1"),
        (["serve", "--model", "/no/such/model", "--port", "0"], 1, "model not found"),
    ],
)
def test_serve_usage_and_input_errors(args, rc, needle, capsys):
    if rc == 2:
        with pytest.raises(SystemExit) as exc:
            cli_main(args)
        assert exc.value.code == 2
    else:
        pytest.importorskip("fastapi")  # without the extra, serve stops earlier, at the install hint
        pytest.importorskip("uvicorn")
        assert cli_main(args) == 1
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
