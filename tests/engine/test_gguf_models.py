"""GGUF language models of seven architectures, written with gguf-py's writer (mixed tensor types
per file), loaded by the app and compared with (a) a NumPy float32 forward of gguf-py's dequantized
weights in llama.cpp's layout and (b) mlx-lm running the converted model saved as an mlx-lm folder."""

from __future__ import annotations

import dataclasses

import mlx.core as mx
import numpy as np
import pytest

from engine.core.errors import UserError

pytest.importorskip("gguf")
from tests.gguf_reference import SPECS, dequantized, reference_logits, write_model  # noqa: E402

IDS = [5, 71, 200, 3, 88, 129, 257, 14, 42, 99]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    out = {}
    for i, arch in enumerate(SPECS):
        path = root / f"tiny-{arch}.gguf"
        write_model(path, arch, seed=i)
        out[arch] = path
    return out


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("arch", list(SPECS))
def test_gguf_model_matches_numpy_reference_and_mlx_lm(models, arch, tmp_path):
    from mlx_lm import load as mlx_lm_load

    from engine.llm.loader import load_language_model
    from engine.llm.quantize import save_language_model

    path = models[arch]
    seen = []
    lm = load_language_model(path, progress=lambda f, m: seen.append((f, m)))
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    assert any("Q4_K -> affine 4-bit g32" in m for _, m in seen)
    got = np.array(lm.model(mx.array([IDS]))[0].astype(mx.float32))
    ref = reference_logits(arch, dequantized(path), IDS)
    assert _rel(got, ref) <= 1e-3, f"{arch}: {_rel(got, ref):.2e}"

    # The per-tensor record: several GGUF types, exact ones marked, requantized ones with their error.
    record = lm.config["gguf"]["tensors"]
    types = {r["gguf_type"] for r in record.values()}
    assert len(types) >= 4, types
    assert all(r["exact"] for r in record.values())
    assert {"Q4_K", "Q8_0"} <= types
    q = lm.config["quantization"]
    assert q["model.embed_tokens"] == {"group_size": 32, "bits": 8, "mode": "affine"}
    assert lm.config["tie_word_embeddings"] == SPECS[arch]["tied"] or arch == "gemma2"

    folder = save_language_model(lm, lm.config, tmp_path / "mlx")
    model, _ = mlx_lm_load(str(folder))
    theirs = np.array(model(mx.array([IDS]))[0].astype(mx.float32))
    assert _rel(theirs, got) <= 1e-5
    assert _rel(theirs, ref) <= 1e-3


def test_gemma_norms_and_llama_rotary_layout_are_seen_by_the_reference(models, monkeypatch):
    """Skipping either quirk moves the logits far past the tolerance: the tests can fail."""
    from engine.llm import gguf, gguf_arch
    from engine.llm.loader import load_language_model

    ids = IDS
    monkeypatch.setattr(gguf, "unpermute_rows", lambda w, heads: w)
    wrong = np.array(load_language_model(models["llama"]).model(mx.array([ids]))[0])
    assert _rel(wrong, reference_logits("llama", dequantized(models["llama"]), ids)) > 1e-2
    monkeypatch.undo()
    plain = dataclasses.replace(gguf_arch.ARCHITECTURES["gemma3"], norm_plus_one=False)
    monkeypatch.setattr(gguf, "architecture", lambda name: plain)
    wrong = np.array(load_language_model(models["gemma3"]).model(mx.array([ids]))[0])
    assert _rel(wrong, reference_logits("gemma3", dequantized(models["gemma3"]), ids)) > 1e-2


def test_requantized_types_load_with_their_error_recorded(tmp_path):
    """Q6_K (output), Q3_K and Q2_K have no exact MLX form: requantized, errors recorded, logits close."""
    from engine.llm.loader import load_language_model

    path = tmp_path / "tiny-llama-q6k.gguf"
    write_model(path, "llama", seed=11, requantized=True)
    lm = load_language_model(path)
    record = lm.config["gguf"]["tensors"]
    assert record["lm_head.weight"]["gguf_type"] == "Q6_K"
    assert record["lm_head.weight"]["mlx_format"] == "affine 8-bit g32"
    requant = {r["gguf_type"]: r for r in record.values() if not r["exact"]}
    assert {"Q6_K", "Q3_K", "Q2_K"} <= set(requant)
    assert all(0 < r["mean_abs_error"] < r["max_abs_error"] for r in requant.values())
    assert lm.config["quantization"]["lm_head"]["bits"] == 8
    formats = {r.name: r.format for r in lm.card.layers}
    assert formats["lm_head"] == "Q6_K~int8/g32" and formats["model.embed_tokens"] == "Q8_0=int8/g32"
    assert formats["model.norm"] == "F32=fp32"
    got = np.array(lm.model(mx.array([IDS]))[0].astype(mx.float32))
    # The reference runs on gguf-py's values, except that each requantized tensor takes the values MLX
    # holds for it (back in llama.cpp's row order), which must lie within the recorded error.
    from mlx.utils import tree_flatten

    from tests.gguf_reference import HEADS, KV_HEADS, llama_cpp_permute

    params = dict(tree_flatten(lm.model.parameters()))
    weights = dequantized(path)
    for hf, r in record.items():
        if r["exact"]:
            continue
        base, bits = hf.removesuffix(".weight"), int(r["mlx_format"].split()[1].removesuffix("-bit"))
        w = params[f"{base}.weight"], params[f"{base}.scales"], params[f"{base}.biases"]
        held = np.array(mx.dequantize(*w, group_size=32, bits=bits))
        if ".q_proj" in hf or ".k_proj" in hf:
            held = llama_cpp_permute(held, HEADS if ".q_proj" in hf else KV_HEADS)
        err = np.abs(held - weights[r["gguf_name"]])
        assert err.max() == pytest.approx(r["max_abs_error"], rel=1e-4) and err.max() > 0
        weights[r["gguf_name"]] = held
    assert _rel(got, reference_logits("llama", weights, IDS)) <= 1e-3


def test_llama3_rope_freqs_become_mlx_lm_rope_scaling(tmp_path):
    """Llama 3.1+ files carry rope scaling only as llama.cpp's per-pair rope_freqs tensor."""
    import math

    from gguf import GGMLQuantizationType as T

    from engine.llm.loader import load_language_model
    from tests.gguf_fixtures import write_gguf
    from tests.gguf_reference import HEAD_DIM, ROPE_BASE, byte_vocab, model_metadata, model_tensors

    # convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors, for factor 8 (Llama 3.1).
    base, factor, low, high, old = ROPE_BASE["llama"], 8.0, 1.0, 4.0, 8192
    factors = []
    for freq in 1.0 / base ** (np.arange(0, HEAD_DIM, 2) / HEAD_DIM):
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1.0)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    factors = np.array(factors, dtype=np.float32)
    assert 1.0 in factors and factor in factors and len(set(factors.tolist())) > 2  # all three regimes

    tokens, merges = byte_vocab()
    tensors = model_tensors("llama", len(tokens), np.random.default_rng(5))
    tensors["rope_freqs.weight"] = (factors, T.F32)
    path = tmp_path / "llama31.gguf"
    write_gguf(path, "llama", tensors, model_metadata("llama", tokens, merges))
    lm = load_language_model(path)
    assert lm.config["rope_scaling"] == {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    periods = np.array(lm.model.layers[0].self_attn.rope._freqs)  # mlx-lm's Llama3RoPE: base**(2i/d) * factor_i
    np.testing.assert_allclose(periods / base ** (np.arange(0, HEAD_DIM, 2) / HEAD_DIM), factors, rtol=1e-4)

    tensors["rope_freqs.weight"] = (factors[::-1].copy(), T.F32)
    write_gguf(tmp_path / "odd.gguf", "llama", tensors, model_metadata("llama", tokens, merges))
    with pytest.raises(UserError, match="odd.gguf.*rope_freqs"):
        load_language_model(tmp_path / "odd.gguf")


def test_unknown_architectures_and_unreadable_types_are_one_line(tmp_path):
    from gguf import GGML_QUANT_SIZES
    from gguf import GGMLQuantizationType as T

    from engine.llm.loader import load_language_model
    from tests.gguf_fixtures import write_gguf
    from tests.gguf_reference import byte_vocab, model_metadata, model_tensors

    tokens, merges = byte_vocab()
    tensors = model_tensors("llama", len(tokens), np.random.default_rng(0))
    kv = {k.replace("llama.", "gptneox."): v for k, v in model_metadata("llama", tokens, merges).items()}
    write_gguf(tmp_path / "neox.gguf", "gptneox", tensors, kv)
    with pytest.raises(UserError) as exc:
        load_language_model(tmp_path / "neox.gguf")
    text = str(exc.value)
    assert "\n" not in text and "neox.gguf" in text and "'gptneox' is not supported" in text
    assert "gemma2, gemma3, llama, mistral, phi3, qwen2, qwen3" in text

    block, size = GGML_QUANT_SIZES[T.Q8_1]  # gguf-py has no dequantizer for Q8_1
    raw = np.random.default_rng(1).integers(0, 256, (128, 256 // block * size), dtype=np.uint8)
    tensors["blk.0.attn_k.weight"] = (raw, T.Q8_1)
    write_gguf(tmp_path / "q81.gguf", "llama", tensors, model_metadata("llama", tokens, merges))
    with pytest.raises(UserError, match=r"q81.gguf.*'blk.0.attn_k.weight' has type Q8_1, which gguf-py cannot read"):
        load_language_model(tmp_path / "q81.gguf")


def test_a_gguf_too_big_for_memory_is_refused_before_reading(models, monkeypatch):
    from engine.core import memory_guard
    from engine.llm import gguf
    from engine.llm.loader import load_language_model

    monkeypatch.setattr(memory_guard, "available_memory_bytes", lambda: 1024)
    monkeypatch.setattr(gguf, "open_reader", lambda path: pytest.fail("the file was opened"))
    with pytest.raises(UserError, match="tiny-llama.gguf.*not enough memory to load"):
        load_language_model(models["llama"])
