"""The quantization engine's subcommands, run through engine.cli.main as a user would."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from engine.cli import main
from engine.image.bundle import load_bundle
from engine.image.quant.calibration import load_images, logits_of


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sensitivity_writes_one_row_per_layer_and_format(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["sensitivity", "--model", "default", "--bits", "2,8", "--calib", "16", "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    assert "weight-only" in text and "conv4.conv" in text
    rows = _rows(out)
    layers = {r["layer"] for r in rows}
    assert layers == {"stem.conv", "dw.conv", "pw.conv", "conv3.conv", "conv4.conv", "head"}
    assert len(rows) == 2 * len(layers)
    kl = {(r["layer"], r["format"]): float(r["kl_divergence"]) for r in rows}
    assert all(kl[(p, "int2")] > kl[(p, "int8")] for p in layers)


def test_quantize_with_options_and_a_json_recipe_reloads_exactly(tmp_path, capsys):
    out = tmp_path / "m"
    argv = ["quantize", "--model", "default", "--recipe", "mixed-4-8", "--keep-first", "fp16"]
    assert main([*argv, "--override", "head=int2", "--out", str(out)]) == 0
    b = load_bundle(out)
    layers = b.quantization["layers"]
    assert layers["stem.conv"].get("dtype") == "float16" and "bits" not in layers["stem.conv"]
    assert layers["head"]["bits"] == 2
    # The bundle's config.json, or the recipe object written into it, given back as --recipe
    # rebuilds the same model.
    recipe_file = tmp_path / "r.json"
    recipe_file.write_text(json.dumps(b.quantization["recipe"]))
    x = load_images(b, "default-val", 8).x
    for i, source in enumerate((out / "config.json", recipe_file)):
        again = tmp_path / f"again{i}"
        assert main(["quantize", "--model", "default", "--recipe", str(source), "--out", str(again)]) == 0
        b2 = load_bundle(again)
        assert b2.quantization["layers"] == layers
        np.testing.assert_array_equal(logits_of(b.model, x), logits_of(b2.model, x))
    assert main(["quantize", "--model", "default", "--recipe", "int7", "--out", str(tmp_path / "x")]) == 1
    assert "not 7" in capsys.readouterr().err


def test_autoquant_meets_a_size_budget_and_writes_its_trace(tmp_path, capsys):
    out, trace = tmp_path / "aq", tmp_path / "t.csv"
    argv = ["autoquant", "--model", "default", "--target-bpw", "3.5", "--calib", "16", "--out", str(out)]
    assert main([*argv, "--trace-csv", str(trace), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["met"] and report["bits_per_weight"] <= 3.5
    assert load_bundle(out).quantization["recipe"]["name"] == "auto-bpw3.5"
    steps = _rows(trace)
    assert steps[-1]["action"] == "chosen" and float(steps[-1]["bits_per_weight"]) <= 3.5
    # Both budgets at once are a usage error; a quantized source is refused with one line.
    assert main(["autoquant", "--model", str(out), "--target-bpw", "3", "--out", str(tmp_path / "y")]) == 1
    assert "already quantized" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["autoquant", "--model", "default", "--target-bpw", "3", "--target-mb", "1", "--out", "z"])
    assert exc.value.code == 2


def test_autoquant_over_formats_and_methods_records_each_layers_method(tmp_path, capsys):
    base = ["autoquant", "--model", "default", "--target-bpw", "4", "--calib", "16", "--candidates", "int3,int4,int8"]
    out, trace = tmp_path / "aqm", tmp_path / "t.csv"
    argv = [*base, "--methods", "rtn,gptq+bc", "--out", str(out), "--trace-csv", str(trace), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["met"] and report["bits_per_weight"] <= 4
    methods = report["methods"]
    assert set(methods) == set(report["layers"]) and set(methods.values()) <= {"rtn", "gptq+bc"}
    assert sum(report["method_counts"].values()) == len(methods)
    assert "gptq+bc" in report["method_counts"]  # on this model it wins at int3/int4 for some layer
    q = load_bundle(out).quantization
    assert q["method"]["name"] == "per-layer" and q["method"]["layers"] == methods
    chosen = _rows(trace)[-1]
    assert chosen["action"] == "chosen"
    assert chosen["assignment"].split() == [f"{p}={report['layers'][p]}@{m}" for p, m in methods.items()]
    # Plain text: the method beside each layer's format, and the counts.
    assert main([*base, "--methods", "gptq+bc", "--out", str(tmp_path / "aq2")]) == 0
    text = capsys.readouterr().out
    assert "methods: gptq+bc 6 layers" in text and "conv4.conv" in text
    # Fisher cannot rank methods: one line, before any work.
    bad = [*base, "--methods", "rtn,gptq", "--sensitivity", "fisher", "--out", str(tmp_path / "aq3")]
    assert main(bad) == 1
    assert "Fisher sensitivity cannot rank methods" in capsys.readouterr().err


def test_actsim_and_evaluate_label_weight_only_and_simulated_numbers(tmp_path, capsys):
    q = tmp_path / "q"
    assert main(["quantize", "--model", "default", "--recipe", "int8", "--out", str(q)]) == 0
    capsys.readouterr()
    out = tmp_path / "a.csv"
    argv = ["actsim", "--model", str(q), "--observers", "minmax,mse", "--calib", "1,16", "--limit", "64"]
    assert main([*argv, "--csv", str(out)]) == 0
    rows = _rows(out)
    assert [(r["observer"], r["calibration_images"]) for r in rows] == [
        ("minmax", "1"),
        ("minmax", "16"),
        ("mse", "1"),
        ("mse", "16"),
    ]
    assert len({r["weight_only_accuracy"] for r in rows}) == 1
    capsys.readouterr()
    argv = ["evaluate", "--model", str(q), "--data", "default", "--limit", "64", "--simulate-activations", "int8"]
    assert main([*argv, "--calib", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["simulated_activations"]["calibration_images"] == 16
    assert report["simulated_activations"]["activations"].startswith("int8")
    assert "accuracy" in report["weight_only"]


def _adaround_bundle(path):
    """The default model at int3 by AdaRound (20 steps per layer), with the source QuantizeJob records."""
    from engine.image.quant.methods import MethodSettings, quantize_with_method
    from engine.image.quant.recipes import resolve_recipe

    b = load_bundle("default")
    q = b.clone()
    x = load_images(b, "default-val", 16, seed=0).x
    q.quantization, _ = quantize_with_method(
        q.model, resolve_recipe("int3"), "adaround", x, settings=MethodSettings(adaround_iters=20),
        input_shape=b.input_shape(),
    )  # fmt: skip
    q.name = "default-int3-adaround"
    q.source = {"kind": "quantized", "parent": str(b.path), "parent_hash": b.content_hash(), "method": "adaround"}
    q.save(path)
    return q


def test_finetune_starts_from_an_adaround_model_and_keeps_its_grid(tmp_path, capsys):
    q = _adaround_bundle(tmp_path / "q")
    out = tmp_path / "ft"
    argv = ["finetune", "--model", str(tmp_path / "q"), "--limit", "64", "--batch-size", "16", "--max-steps", "5"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "teacher:" in text and "quantized from" in text  # no --teacher: the recorded float parent
    assert "int3 (from adaround, its grid kept)" in text
    ft = load_bundle(out)
    assert ft.source["kind"] == "finetuned" and ft.source["from_quantized"]["method"] == "adaround"
    assert ft.source["teacher"] == str(load_bundle("default").path) and ft.name == "default-int3-adaround-kd"
    assert ft.quantization["finetune"]["from_method"] == "adaround" and ft.quantization["finetune"]["steps"] == 5
    assert ft.quantization["layers"] == q.quantization["layers"]
    qm, fm = dict(q.model.named_modules()), dict(ft.model.named_modules())
    for path in q.quantization["layers"]:
        np.testing.assert_array_equal(np.array(fm[path].scales), np.array(qm[path].scales), err_msg=path)

    argv = ["finetune", "--model", str(tmp_path / "q"), "--recipe", "int4", "--out", str(tmp_path / "x")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already quantized with int3 (adaround); recipe int4 disagrees" in err
    assert not (tmp_path / "x").exists()


def test_finetune_trains_and_saves_a_quantized_student(tmp_path, capsys):
    out, hist = tmp_path / "ft", tmp_path / "h.csv"
    argv = ["finetune", "--model", "default", "--teacher", "default", "--recipe", "int3", "--limit", "64"]
    argv += ["--batch-size", "16", "--max-steps", "2", "--out", str(out), "--history-csv", str(hist), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 2 and report["recipe"] == "int3"
    assert len(_rows(hist)) == 2
    b = load_bundle(out)
    assert b.quantization["recipe"]["name"] == "int3" and b.source["kind"] == "finetuned"
    assert main(["finetune", "--model", "default", "--alpha", "2", "--out", str(tmp_path / "x")]) == 1
    assert "alpha" in capsys.readouterr().err
