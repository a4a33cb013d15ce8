"""GGUF tokenizers rebuilt from metadata, against the tokenizers/sentencepiece models they were written from.

The vocabularies are trained here (byte-level BPE with ``tokenizers``, SentencePiece BPE with
byte fallback with ``sentencepiece``) and written into GGUF files the way llama.cpp's converter
writes them; the app's tokenizer must give the same ids on a mixed text.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402

from engine.llm.gguf import Metadata  # noqa: E402
from engine.llm.gguf_tokenizer import gguf_hf_tokenizer  # noqa: E402
from engine.llm.perplexity import tokenizer_bos  # noqa: E402
from tests.gguf_fixtures import write_gguf  # noqa: E402

MIXED = (
    "Hello, world! It's 2026; naïve café, Ærøskøbing, señor.\n"
    "東京は晴れ、北京下雨了。한국어도 조금. 😀🚀👍🏽 emoji!\n"
    "def f(x):\n    return {'k': x**2}  # 42 == 0x2A\n\tend\n"
)
CORPUS = [MIXED, *MIXED.split(), "the quick brown fox jumps over the lazy dog " * 3, "print('hello')\n" * 2]


def _gguf_with_vocab(path, arch: str, kv: dict) -> None:
    w = np.zeros((4, 256), dtype=np.float32)
    write_gguf(path, arch, {"token_embd.weight": (w, T.F32)}, kv)


def _app_tokenizer(path):
    return gguf_hf_tokenizer(Metadata(gguf.GGUFReader(str(path))), path)


@pytest.mark.parametrize("pre", ["gpt2", "llama-bpe"])
def test_byte_level_bpe_matches_tokenizers(tmp_path, pre):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if pre == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        split = (
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        )
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]]
    kv = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [3 if t == "<|endoftext|>" else 1 for t in tokens],
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.eos_token_id": tokens.index("<|endoftext|>"),
    }
    path = tmp_path / "bpe.gguf"
    _gguf_with_vocab(path, "qwen2", kv)
    app = _app_tokenizer(path)
    text = MIXED + "<|endoftext|>"
    want = tok.encode(text).ids
    assert len(set(want)) > 20 and want[-1] == tokens.index("<|endoftext|>")
    assert app.encode(text, add_special_tokens=False) == want
    assert app.decode(want) == text
    assert tokenizer_bos(app) is None  # perplexity keeps its definition without BOS


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_sentencepiece_matches_sentencepiece(tmp_path, arch):
    spm = pytest.importorskip("sentencepiece")

    gemma = arch == "gemma3"
    prefix = tmp_path / "sp"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=not gemma,
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        unk_id=0 if not gemma else 3,
        bos_id=1 if not gemma else 2,
        eos_id=2 if not gemma else 1,
        pad_id=-1 if not gemma else 0,
    )
    sp = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    n = sp.get_piece_size()
    # llama.cpp's converter (_set_vocab_sentencepiece): pieces, scores and token types by id.
    types = [
        2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 5 if sp.is_unused(i) else 1
        for i in range(n)
    ]
    kv = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(n)],
        "tokenizer.ggml.scores": [float(sp.get_score(i)) for i in range(n)],
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": sp.bos_id(),
        "tokenizer.ggml.eos_token_id": sp.eos_id(),
        "tokenizer.ggml.unknown_token_id": sp.unk_id(),
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": not gemma,
    }
    if gemma:
        kv["tokenizer.ggml.padding_token_id"] = sp.pad_id()
    path = tmp_path / "spm.gguf"
    _gguf_with_vocab(path, arch, kv)
    app = _app_tokenizer(path)
    text = MIXED + "Unseen: 猫🐈 Ωμέγα."  # characters outside the training text take the byte fallback
    want = sp.encode(text)
    assert any(sp.is_byte(i) for i in want) and len(set(want)) > 50
    assert app.encode(text, add_special_tokens=False) == want
    assert app.encode(text)[0] == sp.bos_id()  # add_bos_token
    assert app.decode(want) == sp.decode(want)
    assert tokenizer_bos(app) == sp.bos_id()  # perplexity leads each window with it
