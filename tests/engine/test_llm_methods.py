"""mlx-lm's GPTQ and AWQ as cancellable jobs writing folders mlx_lm.load reads (default language model)."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from engine.core.errors import Cancelled, UserError
from engine.jobs.language import QuantizeLMMethodJob
from engine.llm.loader import load_language_model
from engine.llm.methods import calibration_tokens, quantize_lm_with_method
from engine.llm.perplexity import perplexity
from engine.llm.quantize import quantize_language_model
from engine.runtime import JobContext, Workspace
from tests.conftest import ROOT

HELDOUT = ROOT / "resources" / "data" / "moby_dick_heldout.txt"


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """Calibration = the first half of the held-out excerpt, scoring = the second half (disjoint)."""
    words = HELDOUT.read_text(encoding="utf-8").split(" ")
    d = tmp_path_factory.mktemp("texts")
    (d / "calib.txt").write_text(" ".join(words[: len(words) // 2]), encoding="utf-8")
    (d / "score.txt").write_text(" ".join(words[len(words) // 2 :]), encoding="utf-8")
    return d / "calib.txt", d / "score.txt"


def ppl(path, score_text) -> float:
    lm = load_language_model(str(path))
    return perplexity(lm, np.asarray(lm.encode(score_text.read_text()), np.int32), context=128).perplexity


def test_gptq_job_writes_an_mlx_lm_folder_and_beats_rtn(tmp_path, texts):
    import mlx_lm

    calib, score = texts
    steps = []
    job = QuantizeLMMethodJob("default-lm", "gptq", str(calib), str(tmp_path / "gptq"), bits=2, group_size=64,
                              samples=16, sequence_length=128)  # fmt: skip
    res = job.run(JobContext(progress=lambda f, m: steps.append(m)), Workspace())
    cfg = json.loads((tmp_path / "gptq" / "config.json").read_text())
    assert cfg["quantization"]["bits"] == 2 and cfg["mqs"]["method"] == "gptq"
    assert cfg["mqs"]["calibration"] == "calib.txt" and cfg["mqs"]["calibration_samples"] == 16
    assert any("Quantizing" in m for m in steps) and res.seconds > 0
    model, tok = mlx_lm.load(res.path)  # mlx-lm's own loader reads it
    assert isinstance(mlx_lm.generate(model, tok, "Call me", max_tokens=4), str)
    rtn = quantize_language_model("default-lm", "int2", tmp_path / "rtn", 64)
    p_float, p_rtn, p_gptq = ppl("default-lm", score), ppl(rtn.path, score), ppl(res.path, score)
    assert p_gptq < p_rtn, (p_float, p_rtn, p_gptq)


def test_awq_is_cancellable_and_writes_nothing(tmp_path, texts):
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(Cancelled):
        quantize_lm_with_method("default-lm", "awq", tmp_path / "awq", texts[0], 4, 64, 8, 64, should_stop=stop)
    assert not (tmp_path / "awq").exists()


def test_bad_inputs_are_user_errors(tmp_path, texts):
    with pytest.raises(UserError, match="2, 4 or 8 bits"):
        quantize_lm_with_method("default-lm", "gptq", tmp_path / "q", texts[0], bits=3)
    with pytest.raises(UserError, match="unknown language-model method"):
        quantize_lm_with_method("default-lm", "dwq2", tmp_path / "q", texts[0])
    short = tmp_path / "short.txt"
    short.write_text("Call me Ishmael.")
    with pytest.raises(UserError, match="fewer than one chunk"):
        quantize_lm_with_method("default-lm", "gptq", tmp_path / "q", short)
    lm = load_language_model("default-lm")
    chunks = calibration_tokens(lm, texts[0], 4, 64)
    assert chunks.shape == (4, 64) and chunks.dtype == mx.int32


def test_cli_quantize_language_model_with_method(tmp_path, texts, capsys):
    from engine.cli import main

    out = tmp_path / "cli-gptq"
    rc = main(["quantize", "--model", "default-lm", "--recipe", "int4", "--method", "gptq", "--calib", str(texts[0]),
               "--calib-size", "4", "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "gptq int4/g64 on 4 chunks of calib.txt" in captured.out
    assert json.loads((out / "config.json").read_text())["mqs"]["calibration_samples"] == 4
    rc = main(["quantize", "--model", "default-lm", "--recipe", "int4", "--method", "adaround", "--calib",
               str(texts[0]), "--out", str(tmp_path / "x")])  # fmt: skip
    assert rc == 1 and "unknown language-model method 'adaround'" in capsys.readouterr().err


def _packed(path):
    """The quantized layers' tensors of an mlx-lm folder, by name."""
    return mx.load(str(path / "model.safetensors"))


def test_dwq_loads_with_mlx_lm_keeps_rtn_codes_and_is_no_worse_than_rtn(tmp_path, texts):
    import mlx_lm

    calib, score = texts
    steps = []
    res = quantize_lm_with_method("default-lm", "dwq", tmp_path / "dwq", calib, 3, 64, 16, 128,
                                  progress=lambda f, m: steps.append((f, m)), dwq_steps=24)  # fmt: skip
    cfg = json.loads((tmp_path / "dwq" / "config.json").read_text())
    assert cfg["quantization"]["bits"] == 3 and cfg["mqs"]["method"] == "dwq" and cfg["mqs"]["steps"] == 24
    assert steps and steps[-1][0] == 1.0 and all("DWQ step" in m for _, m in steps), steps[-3:]
    model, tok = mlx_lm.load(res.path)  # mlx-lm's own loader reads it
    assert isinstance(mlx_lm.generate(model, tok, "Call me", max_tokens=4), str)
    rtn = quantize_language_model("default-lm", "int3", tmp_path / "rtn", 64)
    # DWQ trains the RTN model's scales and biases only: the packed codes stay RTN's, the scales move.
    a, b = _packed(Path(rtn.path)), _packed(Path(res.path))
    assert a.keys() == b.keys()
    codes = [k for k in a if k.endswith(".weight") and a[k].dtype == mx.uint32]
    scales = [k for k in a if k.endswith(".scales")]
    assert codes and all(mx.array_equal(a[k], b[k]).item() for k in codes)
    assert sum(not mx.allclose(a[k], b[k]).item() for k in scales) >= len(scales) // 2
    p_float, p_rtn, p_dwq = ppl("default-lm", score), ppl(rtn.path, score), ppl(res.path, score)
    assert np.isfinite(p_dwq) and p_dwq <= p_rtn * 1.002, (p_float, p_rtn, p_dwq)


def test_dwq_cancels_during_training_and_writes_nothing(tmp_path, texts):
    seen = []

    def stop():
        return len(seen) >= 2  # two training steps reported, then stop

    with pytest.raises(Cancelled):
        quantize_lm_with_method("default-lm", "dwq", tmp_path / "dwq", texts[0], 4, 64, 8, 64,
                                progress=lambda f, m: seen.append(m), should_stop=stop, dwq_steps=50)  # fmt: skip
    assert len(seen) == 2 and not (tmp_path / "dwq").exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_quantize_language_model_with_dwq(tmp_path, texts, capsys):
    from engine.cli import main

    out = tmp_path / "cli-dwq"
    rc = main(["quantize", "--model", "default-lm", "--recipe", "int4", "--method", "dwq", "--calib", str(texts[0]),
               "--calib-size", "4", "--dwq-steps", "3", "--dwq-learning-rate", "2e-4", "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "dwq int4/g64 on 4 chunks of calib.txt" in captured.out
    mqs = json.loads((out / "config.json").read_text())["mqs"]
    assert (mqs["steps"], mqs["learning_rate"]) == (3, 2e-4)


def test_cli_dwq_options_belong_to_dwq(tmp_path, texts, capsys):
    from engine.cli import main

    rc = main(["quantize", "--model", "default-lm", "--recipe", "int4", "--method", "gptq", "--calib", str(texts[0]),
               "--dwq-steps", "3", "--out", str(tmp_path / "a")])  # fmt: skip
    assert rc == 1 and "options of --method dwq, not gptq" in capsys.readouterr().err
    rc = main(["quantize", "--model", "default", "--recipe", "int4", "--method", "gptq", "--dwq-learning-rate", "1e-3",
               "--out", str(tmp_path / "b")])  # fmt: skip
    assert rc == 1 and "a language-model method" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_dwq_calibrates_on_one_fresh_chunk_per_training_row_by_default(tmp_path, texts):
    """Without a count DWQ takes steps x batch chunks, so no chunk is trained on twice (the text has enough)."""
    from engine.llm.methods import DEFAULT_SAMPLES, DWQ_BATCH_SIZE

    r = quantize_lm_with_method("default-lm", "dwq", tmp_path / "dwq", texts[0], 4, 64, None, 64, dwq_steps=3)
    assert r.calib_samples == 3 * DWQ_BATCH_SIZE != DEFAULT_SAMPLES
    assert json.loads((tmp_path / "dwq" / "config.json").read_text())["mqs"]["calibration_samples"] == 12
