"""GGUF files (llama.cpp, LM Studio) as mlx-lm models.

``mx.load`` reads the tensors (F32/F16 as floats; Q4_0, Q4_1 and Q8_0 as MLX
group-wise quantized triples with group size 32) and the metadata. What this
module adds:

* tensor names: llama.cpp's ``blk.N.attn_q`` -> Hugging Face ``model.layers.N.self_attn.q_proj``;
* the rotary layout: llama.cpp's converter permutes the rows of q_proj and k_proj
  of LLaMA-family models from the Hugging Face "rotate half" layout into interleaved
  pairs (``reshape(heads, 2, d/2, ...).swapaxes(1, 2)``); we apply the inverse so
  mlx-lm's llama model (``rope_traditional=False``) computes the same function;
* the model config from ``<arch>.*`` metadata keys;
* the tokenizer from ``tokenizer.ggml.*``: byte-level BPE (``gpt2``) is rebuilt with
  the ``tokenizers`` library; SentencePiece (``llama``) goes through transformers'
  GGUF reader, which needs the ``gguf`` package.
"""

from __future__ import annotations

import re
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import UserError

# GGUF architecture -> (mlx-lm model_type, whether llama.cpp permuted q/k rows)
ARCHITECTURES = {"llama": ("llama", True), "mistral": ("llama", True), "qwen2": ("qwen2", False)}

_NAMES = [
    (r"^token_embd\.", "model.embed_tokens."),
    (r"^output_norm\.", "model.norm."),
    (r"^output\.", "lm_head."),
    (r"^blk\.(\d+)\.attn_q\.", r"model.layers.\1.self_attn.q_proj."),
    (r"^blk\.(\d+)\.attn_k\.", r"model.layers.\1.self_attn.k_proj."),
    (r"^blk\.(\d+)\.attn_v\.", r"model.layers.\1.self_attn.v_proj."),
    (r"^blk\.(\d+)\.attn_output\.", r"model.layers.\1.self_attn.o_proj."),
    (r"^blk\.(\d+)\.attn_norm\.", r"model.layers.\1.input_layernorm."),
    (r"^blk\.(\d+)\.ffn_norm\.", r"model.layers.\1.post_attention_layernorm."),
    (r"^blk\.(\d+)\.ffn_gate\.", r"model.layers.\1.mlp.gate_proj."),
    (r"^blk\.(\d+)\.ffn_up\.", r"model.layers.\1.mlp.up_proj."),
    (r"^blk\.(\d+)\.ffn_down\.", r"model.layers.\1.mlp.down_proj."),
]
_SKIP = re.compile(r"^rope_freqs\.")
# Pre-tokenizer regexes named by tokenizer.ggml.pre (GPT-2's is the ByteLevel default).
_LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def hf_name(gguf_name: str) -> str | None:
    """The Hugging Face/mlx-lm name of a llama.cpp tensor, or None for tensors to drop."""
    if _SKIP.match(gguf_name):
        return None
    for pattern, repl in _NAMES:
        new, n = re.subn(pattern, repl, gguf_name)
        if n:
            return new
    raise UserError(f"unknown GGUF tensor '{gguf_name}'")


def unpermute_rows(w: mx.array, n_heads: int) -> mx.array:
    """Undo llama.cpp's q/k row permutation (works on packed weights, scales and biases too)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _scalar(meta: dict, key: str, default=None):
    v = meta.get(key, default)
    if isinstance(v, mx.array):
        return v.item()
    return v


def gguf_config(meta: dict, weights: dict[str, mx.array]) -> dict:
    """An mlx-lm config.json dict from GGUF metadata."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise UserError(f"GGUF architecture '{arch}' is not supported (supported: {', '.join(sorted(ARCHITECTURES))})")
    model_type, _ = ARCHITECTURES[arch]
    heads = int(_scalar(meta, f"{arch}.attention.head_count"))
    hidden = int(_scalar(meta, f"{arch}.embedding_length"))
    vocab = weights["token_embd.weight"].shape[0]
    tokens = meta.get("tokenizer.ggml.tokens")
    cfg = {
        "model_type": model_type,
        "hidden_size": hidden,
        "num_hidden_layers": int(_scalar(meta, f"{arch}.block_count")),
        "intermediate_size": int(_scalar(meta, f"{arch}.feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_scalar(meta, f"{arch}.attention.head_count_kv", heads)),
        "rms_norm_eps": float(_scalar(meta, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(_scalar(meta, f"{arch}.rope.freq_base", 10000.0)),
        "vocab_size": len(tokens) if isinstance(tokens, list) else vocab,
        "tie_word_embeddings": "output.weight" not in weights,
    }
    if (ctx := _scalar(meta, f"{arch}.context_length")) is not None:
        cfg["max_position_embeddings"] = int(ctx)
    rot = _scalar(meta, f"{arch}.rope.dimension_count")
    if rot is not None and int(rot) != hidden // heads:
        cfg["head_dim"] = int(rot)
    for key, name in (("bos_token_id", "bos"), ("eos_token_id", "eos")):
        v = _scalar(meta, f"tokenizer.ggml.{name}_token_id")
        if v is not None:
            cfg[key] = int(v)
    return cfg


def _quantization(weights: dict[str, mx.array]) -> dict | None:
    """mlx-lm's quantization config for GGUF's Q4_0/Q4_1/Q8_0 tensors (group size 32)."""
    for k, w in weights.items():
        if k.endswith(".scales"):
            base = k[: -len(".scales")]
            packed = weights[base + ".weight"]
            in_dims = w.shape[-1] * 32
            return {"group_size": 32, "bits": packed.shape[-1] * 32 // in_dims, "mode": "affine"}
    return None


def load_gguf(path: Path):
    """Read a GGUF file into (model, tokenizer wrapper, config)."""
    from mlx_lm.utils import _get_classes

    try:
        raw, meta = mx.load(str(path), return_metadata=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise UserError(f"not a readable GGUF file ({str(exc).splitlines()[0]})", path) from None
    try:
        config = gguf_config(meta, raw)
    except UserError as exc:
        raise UserError(str(exc), path) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"GGUF metadata is incomplete ({exc})", path) from None
    _, permuted = ARCHITECTURES[meta["general.architecture"]]
    weights = {}
    for name, w in raw.items():
        new = hf_name(name)
        if new is None:
            continue
        if permuted and (".q_proj." in new or ".k_proj." in new):
            heads = config["num_attention_heads"] if ".q_proj." in new else config["num_key_value_heads"]
            w = unpermute_rows(w, heads)
        weights[new] = w

    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    if (q := _quantization(weights)) is not None:
        config["quantization"] = q
        nn.quantize(
            model,
            group_size=q["group_size"],
            bits=q["bits"],
            class_predicate=lambda p, m: hasattr(m, "to_quantized") and f"{p}.scales" in weights,
        )
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise UserError(f"GGUF tensors do not fit a {config['model_type']} model ({exc})", path) from None
    model.eval()
    mx.eval(model.parameters())
    return model, gguf_tokenizer(path, meta, config), config


def gguf_tokenizer(path: Path, meta: dict, config: dict):
    """An mlx-lm TokenizerWrapper from the GGUF's tokenizer metadata."""
    from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, TokenizerWrapper
    from transformers import PreTrainedTokenizerFast

    kind = meta.get("tokenizer.ggml.model")
    eos = config.get("eos_token_id")
    if kind == "gpt2":
        tok = _byte_level_bpe(meta)
        tokens = meta["tokenizer.ggml.tokens"]
        special = {}
        if "bos_token_id" in config:
            special["bos_token"] = tokens[config["bos_token_id"]]
        if eos is not None:
            special["eos_token"] = tokens[eos]
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **special)
        return TokenizerWrapper(fast, BPEStreamingDetokenizer, eos_token_ids=[eos] if eos is not None else None)
    if kind == "llama":
        try:
            import gguf  # noqa: F401  (transformers' GGUF reader needs it)
            from transformers import AutoTokenizer
        except ImportError:
            raise UserError(
                "this GGUF has a SentencePiece tokenizer; install the 'gguf' package to read it", path
            ) from None
        from mlx_lm.tokenizer_utils import SPMStreamingDetokenizer

        hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return TokenizerWrapper(hf, SPMStreamingDetokenizer, eos_token_ids=[eos] if eos is not None else None)
    raise UserError(f"GGUF tokenizer type '{kind}' is not supported (gpt2 and llama are)", path)


def _byte_level_bpe(meta: dict):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tokens = meta["tokenizer.ggml.tokens"]
    merges = meta.get("tokenizer.ggml.merges") or []
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    pre = meta.get("tokenizer.ggml.pre", "gpt2")
    if pre in ("llama-bpe", "llama3"):
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    types = meta.get("tokenizer.ggml.token_type")
    if isinstance(types, mx.array):
        # Control tokens (type 3) stay whole: "<|endoftext|>" must not be split into bytes.
        from tokenizers import AddedToken

        control = [tokens[i] for i in np.flatnonzero(np.array(types) == 3)]
        tok.add_special_tokens([AddedToken(t, special=True) for t in control])
    return tok
