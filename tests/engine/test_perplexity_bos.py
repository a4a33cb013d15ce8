"""Perplexity with BOS: when the tokenizer adds a BOS token, each window is [BOS] + window and every
window token is scored; otherwise the definition is unchanged. Checked against log-softmax in NumPy."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from engine.llm.detect import DEFAULT_TEXT


@pytest.fixture(scope="module")
def lm():
    from engine.llm.loader import load_language_model

    return load_language_model("default-lm")


def _nll(model, inputs: list[int], targets: list[int]) -> float:
    logits = np.array(model(mx.array([inputs]))[0].astype(mx.float32), dtype=np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    return -float(logp[np.arange(len(targets)), targets].sum())


@pytest.mark.parametrize("n_ids", [150, 129])  # a short last window; a last window of one token
def test_windows_led_by_bos_score_every_token(lm, n_ids):
    from engine.llm.perplexity import perplexity

    ids = np.array(lm.encode(DEFAULT_TEXT.read_text(encoding="utf-8")), dtype=np.int32)[:n_ids]
    bos = 0
    total, count = 0.0, 0
    for start in range(0, n_ids, 64):
        w = ids[start : start + 64].tolist()
        total += _nll(lm.model, [bos, *w[:-1]], w)
        count += len(w)
    got = perplexity(lm, ids, context=64, bos=bos)
    assert got.bos and got.predicted == count == n_ids and got.windows == -(-n_ids // 64)
    assert got.nll == pytest.approx(total / count, rel=1e-5)
    plain = perplexity(lm, ids, context=64, bos=False)
    assert not plain.bos and plain.predicted == n_ids - -(-n_ids // 64)  # token 0 of each window is not scored


def test_bos_follows_the_tokenizer(lm, monkeypatch):
    from engine.llm import perplexity as ppl

    ids = np.array(lm.encode(DEFAULT_TEXT.read_text(encoding="utf-8")), dtype=np.int32)[:100]
    assert ppl.tokenizer_bos(lm.tokenizer) is None  # the shipped GPT-2-style tokenizer adds none
    auto, plain = ppl.perplexity(lm, ids, 64), ppl.perplexity(lm, ids, 64, bos=False)
    assert not auto.bos and (auto.nll, auto.predicted) == (plain.nll, plain.predicted)
    monkeypatch.setattr(ppl, "tokenizer_bos", lambda tok: 7)
    with_bos = ppl.perplexity(lm, ids, 64)
    assert with_bos.bos and with_bos.nll == pytest.approx(ppl.perplexity(lm, ids, 64, bos=7).nll, rel=1e-9)


def test_a_sentencepiece_gguf_is_evaluated_with_bos_and_the_run_says_so(tmp_path, capsys):
    spm = pytest.importorskip("sentencepiece")
    from engine.cli import main
    from engine.llm.perplexity import tokenizer_bos
    from engine.measure.results import ResultsStore
    from tests.gguf_fixtures import write_gguf
    from tests.gguf_reference import model_metadata, model_tensors

    text = DEFAULT_TEXT.read_text(encoding="utf-8")[:4000]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.splitlines() * 2),
        model_prefix=str(tmp_path / "sp"),
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
    )
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    kv = {k: v for k, v in model_metadata("llama", tokens, []).items() if not k.startswith("tokenizer.")}
    kv.update(
        {
            "tokenizer.ggml.model": "llama",
            "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": [float(sp.get_score(i)) for i in range(len(tokens))],
            "tokenizer.ggml.token_type": [
                3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1 for i in range(len(tokens))
            ],
            "tokenizer.ggml.bos_token_id": sp.bos_id(),
            "tokenizer.ggml.eos_token_id": sp.eos_id(),
            "tokenizer.ggml.unknown_token_id": sp.unk_id(),
            "tokenizer.ggml.add_bos_token": True,
        }
    )
    model = tmp_path / "tiny-spm.gguf"
    write_gguf(model, "llama", model_tensors("llama", len(tokens), np.random.default_rng(3)), kv)
    sample = tmp_path / "sample.txt"
    sample.write_text(text[:1500], encoding="utf-8")

    from engine.llm.loader import load_language_model

    assert tokenizer_bos(load_language_model(model).tokenizer) == sp.bos_id()
    assert main(["evaluate", "--model", str(model), "--text", str(sample), "--context", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bos"] is True and out["predicted_tokens"] == out["tokens"] and "[BOS]" in out["definition"]
    (run,) = [r for r in ResultsStore().list() if r.kind == "evaluate"]
    assert run.settings["bos"] is True and run.metrics["bos"] == 1.0
