"""The memory guard refuses to load, import or quantize what the machine cannot hold, with one
line naming the model, before any weights are read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.core import memory_guard, paths
from engine.core.errors import UserError
from tests.reliability import corpus

DEFAULT_WEIGHTS = (paths.DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size


def limit_memory(monkeypatch, nbytes: int) -> None:
    monkeypatch.setattr(memory_guard, "available_memory_bytes", lambda: nbytes)


def run_main(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               12000.
Pages active:                            400000.
Pages inactive:                          300000.
Pages speculative:                         5000.
Pages throttled:                              0.
"""


def test_vm_stat_parsing():
    assert memory_guard.parse_vm_stat(VM_STAT) == (12000 + 300000 + 5000) * 16384
    assert memory_guard.parse_vm_stat("garbage") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/meminfo")
def test_available_memory_is_meminfo_available():
    line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemAvailable:"))
    expected = int(line.split()[1]) * 1024
    got = memory_guard.available_memory_bytes()
    assert abs(got - expected) < 256 * 2**20  # the two reads are moments apart
    assert got <= memory_guard.physical_memory_bytes()


def test_loading_a_bundle_too_big_is_refused(monkeypatch, capsys):
    limit_memory(monkeypatch, DEFAULT_WEIGHTS)  # the weights fit, their working set does not
    rc, out, err = run_main(capsys, "info", "--model", "default")
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "not enough memory to load" in err and str(paths.DEFAULT_MODEL_DIR) in err
    assert f"{DEFAULT_WEIGHTS / 1024:.1f} KB of weights" in err


def test_the_guard_lets_through_what_fits_and_can_be_switched_off(monkeypatch, capsys):
    limit_memory(monkeypatch, int(DEFAULT_WEIGHTS * memory_guard.LOAD_FACTOR) + 1)
    assert run_main(capsys, "info", "--model", "default")[0] == 0
    limit_memory(monkeypatch, 1)
    monkeypatch.setenv("MQS_MEMORY_GUARD", "0")
    assert run_main(capsys, "info", "--model", "default")[0] == 0


def test_quantize_is_refused_when_only_the_load_fits(monkeypatch, capsys, tmp_path):
    # Enough to load the float model (1.3x), not for the working copy and the result (1.5x more).
    limit_memory(monkeypatch, int(DEFAULT_WEIGHTS * 1.4))
    out = tmp_path / "q"
    rc, _, err = run_main(capsys, "quantize", "--model", "default", "--recipe", "int8", "--out", str(out))
    assert rc == 1 and "not enough memory to quantize" in err and str(paths.DEFAULT_MODEL_DIR) in err
    assert not out.exists()


def test_import_is_refused(monkeypatch, capsys, corpus_dir):
    weights = corpus_dir / "groß.safetensors"
    weights.write_bytes(corpus.default_weights_path().read_bytes())
    limit_memory(monkeypatch, DEFAULT_WEIGHTS * 2)
    out = corpus_dir / "B"
    rc, _, err = run_main(capsys, "import", "--arch", "small_cnn", "--weights", str(weights), "--out", str(out))
    assert rc == 1 and "not enough memory to import" in err and str(weights) in err
    assert not out.exists()


def test_language_models_are_guarded_too(monkeypatch, tmp_path):
    from engine.llm.loader import load_language_model
    from engine.llm.quantize import quantize_language_model

    limit_memory(monkeypatch, 2**20)
    with pytest.raises(UserError, match="not enough memory to load") as e:
        load_language_model("default-lm")
    assert str(paths.DEFAULT_LM_DIR) in str(e.value)
    with pytest.raises(UserError, match="not enough memory to quantize"):
        quantize_language_model("default-lm", "int4", tmp_path / "q")
    assert not (tmp_path / "q").exists()
