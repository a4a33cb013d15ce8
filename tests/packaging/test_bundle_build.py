"""Build the real bundle with PyInstaller and run its --selftest offscreen (minutes: -m slow)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None, reason="needs the packaging extra (PyInstaller)")
def test_built_bundle_passes_its_selftest(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "packaging" / "test_bundle.sh"), "--python", sys.executable, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        timeout=1150,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "frozen bundle" in out and "10/10 samples correct" in out and "selftest passed" in out
    assert "bundle test passed" in out
    # The bundle left the heavy optional frameworks out.
    internal = next(tmp_path.glob("dist/*/_internal"), None) or next(tmp_path.glob("dist/*.app/Contents/Frameworks"))
    for heavy in ("torch", "tensorflow", "onnxruntime", "keras"):
        assert not (internal / heavy).exists(), heavy
