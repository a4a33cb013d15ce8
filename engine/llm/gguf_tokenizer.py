"""The tokenizer of a GGUF file, rebuilt from its metadata by transformers' GGUF converter.

transformers maps llama.cpp's ``tokenizer.ggml.*`` keys onto its own tokenizer classes
(byte-level BPE for ``gpt2``, SentencePiece-style BPE for ``llama``, Gemma's variant, the
pre-tokenizer regex named by ``tokenizer.ggml.pre``, control tokens kept whole). Its own
GGUF metadata reader needs torch, so the metadata is read here with gguf-py and handed to
``convert_gguf_tokenizer`` in the same shape.
"""

from __future__ import annotations

from pathlib import Path

from engine.core.errors import UserError

_SPECIAL = {"bos_token": "bos", "eos_token": "eos", "unk_token": "unknown", "pad_token": "padding"}


def tokenizer_inputs(meta) -> tuple[str, dict, dict]:
    """(architecture, tokenizer_dict, tokenizer_config) as transformers' get_gguf_tokenizer builds them."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING

    grouped = {}
    for group, renames in GGUF_TOKENIZER_MAPPING.items():
        grouped[group] = {}
        for key, name in renames.items():
            full = f"tokenizer.{key}"
            if full in meta:
                value = meta(full)
                grouped[group][name] = value.tolist() if hasattr(value, "tolist") else value
    tokenizer, config = grouped["tokenizer"], grouped["tokenizer_config"]
    if tokenizer.get("tokenizer_type") == "llama":
        config.setdefault("add_bos_token", True)  # llama.cpp adds BOS to SentencePiece vocabularies by default
    tokens = tokenizer.get("tokens") or []
    for name, key in _SPECIAL.items():
        token_id = meta(f"tokenizer.ggml.{key}_token_id")
        config[name] = tokens[int(token_id)] if token_id is not None and int(token_id) < len(tokens) else None
    return meta("general.architecture"), tokenizer, config


def gguf_hf_tokenizer(meta, path: Path):
    """A transformers fast tokenizer from the GGUF metadata.

    Raises:
        UserError: no vocabulary, or a tokenizer type transformers cannot rebuild.
    """
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

    arch, tokenizer_dict, tokenizer_config = tokenizer_inputs(meta)
    if not tokenizer_dict.get("tokens"):
        raise UserError("the GGUF file has no tokenizer vocabulary (tokenizer.ggml.tokens)", path)
    try:
        backend, extra = convert_gguf_tokenizer(arch, tokenizer_dict)
    except (ValueError, KeyError) as exc:
        raise UserError(f"cannot rebuild the GGUF tokenizer ({str(exc).splitlines()[0]})", path) from None
    kwargs = {k: v for k, v in {**tokenizer_config, **extra}.items() if v is not None}
    kwargs.pop("chat_template", None)
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False, **kwargs)
    if (template := tokenizer_config.get("chat_template")) is not None:
        hf.chat_template = template
    return hf


def gguf_tokenizer(path: Path, meta, config: dict):
    """An mlx-lm TokenizerWrapper from the GGUF's tokenizer metadata."""
    from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, SPMStreamingDetokenizer, TokenizerWrapper

    hf = gguf_hf_tokenizer(meta, path)
    eos = config.get("eos_token_id")
    detok = BPEStreamingDetokenizer if meta("tokenizer.ggml.model") == "gpt2" else SPMStreamingDetokenizer
    return TokenizerWrapper(hf, detok, eos_token_ids=[eos] if eos is not None else None)
