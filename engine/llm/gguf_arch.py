"""llama.cpp architectures as mlx-lm models: tensor names, config keys and each one's quirks.

* llama/mistral: llama.cpp's converter permutes the rows of q and k from Hugging Face's
  "rotate half" rotary layout into interleaved pairs; ``unpermute_rows`` undoes it so
  mlx-lm's llama (``rope_traditional=False``) computes the same function. qwen2, qwen3,
  gemma2, gemma3 and phi3 use the NeoX layout in llama.cpp and are stored unpermuted.
* gemma2/gemma3: the converter stores every ``*norm.weight`` with 1 added, and mlx-lm's
  Gemma RMSNorm adds 1 itself, so 1 is subtracted; ``ffn_norm`` is the pre-feed-forward
  norm there, not the post-attention one; the output is always tied to the embeddings;
  gemma3's local (sliding-window) layers use rope base 10,000, every 6th layer is global.
* phi3: q/k/v and gate/up are stored fused (``attn_qkv``, ``ffn_up``), as mlx-lm's phi3 has them.
* tied embeddings: no ``output.weight`` -> ``tie_word_embeddings``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from engine.core.errors import UserError

_BLOCK_COMMON = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_norm": "post_attention_layernorm",
}
_GEMMA_BLOCK = {
    **_BLOCK_COMMON,
    "ffn_norm": "pre_feedforward_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_PHI3_BLOCK = {**_BLOCK_COMMON, "attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"}
_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z0-9_]+)\.(weight|bias)$")
_TOP_RE = re.compile(r"^([a-z_]+)\.(weight|bias)$")
# Tensors llama.cpp keeps for its own kernels that mlx-lm derives itself (rope_freqs -> rope_scaling).
_DROPPED = {"rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"}


@dataclass(frozen=True)
class Architecture:
    """How one llama.cpp architecture maps onto an mlx-lm model type."""

    gguf_name: str
    model_type: str
    block_names: dict
    permuted_qk: bool = False  # llama.cpp's converter permuted q/k rows (llama family)
    norm_plus_one: bool = False  # norm weights stored with +1 (Gemma)
    always_tied: bool = False


ARCHITECTURES = {
    a.gguf_name: a
    for a in (
        Architecture("llama", "llama", _BLOCK_COMMON, permuted_qk=True),
        Architecture("mistral", "llama", _BLOCK_COMMON, permuted_qk=True),
        Architecture("qwen2", "qwen2", _BLOCK_COMMON),
        Architecture("qwen3", "qwen3", _BLOCK_COMMON),
        Architecture("gemma2", "gemma2", _GEMMA_BLOCK, norm_plus_one=True, always_tied=True),
        Architecture("gemma3", "gemma3_text", _GEMMA_BLOCK, norm_plus_one=True),
        Architecture("phi3", "phi3", _PHI3_BLOCK),
    )
}


def architecture(name: str | None) -> Architecture:
    """The Architecture of a GGUF's ``general.architecture``.

    Raises:
        UserError: the architecture is not supported (names it and the supported list).
    """
    if name not in ARCHITECTURES:
        raise UserError(f"GGUF architecture '{name}' is not supported (supported: {', '.join(sorted(ARCHITECTURES))})")
    return ARCHITECTURES[name]


def hf_name(arch: Architecture, gguf_name: str) -> str | None:
    """The mlx-lm parameter name of a llama.cpp tensor; None for tensors mlx-lm has no use for.

    Raises:
        UserError: a tensor name this architecture does not have.
    """
    if gguf_name in _DROPPED:
        return None
    if m := _BLOCK.match(gguf_name):
        layer, part, kind = m.groups()
        if part in arch.block_names:
            return f"model.layers.{layer}.{arch.block_names[part]}.{kind}"
    elif (m := _TOP_RE.match(gguf_name)) and m.group(1) in _TOP:
        return f"{_TOP[m.group(1)]}.{m.group(2)}"
    raise UserError(f"tensor '{gguf_name}' is not part of a {arch.gguf_name} model")


def is_norm(hf: str) -> bool:
    return hf.endswith("norm.weight")


def unpermute_rows(w, n_heads: int):
    """Undo llama.cpp's q/k row permutation (rows of weights, packed weights, scales, biases alike)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def mlx_lm_config(arch: Architecture, meta, tensor_names: set[str], vocab_rows: int) -> dict:
    """An mlx-lm config.json dict from the GGUF's ``<arch>.*`` metadata.

    Args:
        meta: a callable ``meta(key, default)`` returning a metadata value.
        tensor_names: the GGUF tensor names (for tied output and biases).
        vocab_rows: rows of ``token_embd``.
    """
    a = arch.gguf_name

    def get(key, default=None):
        return meta(f"{a}.{key}", default)

    def need(key):
        v = get(key)
        if v is None:
            raise UserError(f"GGUF metadata lacks '{a}.{key}'")
        return v

    hidden, heads = int(need("embedding_length")), int(need("attention.head_count"))
    head_dim = int(get("attention.key_length") or get("rope.dimension_count") or hidden // heads)
    layers = int(need("block_count"))
    cfg = {
        "model_type": arch.model_type,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": int(need("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-6)),
        "vocab_size": vocab_rows,  # the embedding rows (a vocabulary may list fewer tokens than rows)
        "tie_word_embeddings": arch.always_tied or "output.weight" not in tensor_names,
    }
    if (theta := get("rope.freq_base")) is not None:
        cfg["rope_theta"] = float(theta)
    if (ctx := get("context_length")) is not None:
        cfg["max_position_embeddings"] = int(ctx)
    scaling = get("rope.scaling.type")
    if scaling == "linear" and (factor := get("rope.scaling.factor")):
        cfg["rope_scaling"] = {"type": "linear", "rope_type": "linear", "factor": float(factor)}
    elif scaling not in (None, "none") and arch.model_type != "phi3":
        raise UserError(f"GGUF rope scaling '{scaling}' is not supported for {a}")
    if arch.model_type == "llama":
        cfg["attention_bias"] = "blk.0.attn_q.bias" in tensor_names
    if arch.model_type in ("gemma2", "gemma3_text"):
        # llama.cpp scales queries by 1/sqrt(head_dim), except the 27B models (1/sqrt(hidden/heads)).
        big = layers == (46 if arch.model_type == "gemma2" else 62)
        cfg["query_pre_attn_scalar"] = hidden // heads if big else head_dim
        if (window := get("attention.sliding_window")) is not None:
            cfg["sliding_window"] = int(window)
    if arch.model_type == "gemma2":
        cfg["attn_logit_softcapping"] = float(get("attn_logit_softcapping", 50.0))
        cfg["final_logit_softcapping"] = float(get("final_logit_softcapping", 30.0))
    if arch.model_type == "gemma3_text":
        cfg["rope_local_base_freq"] = 10000.0  # fixed in llama.cpp's gemma3 graph
        cfg["sliding_window_pattern"] = 6
    if arch.model_type == "phi3":
        rot = get("rope.dimension_count")
        if rot is not None:
            cfg["partial_rotary_factor"] = int(rot) / head_dim
        if (orig := get("rope.scaling.original_context_length")) is not None:
            cfg["original_max_position_embeddings"] = int(orig)
        if "rope_factors_long.weight" in tensor_names:
            raise UserError("phi3 files with long-context rope factors (LongRoPE) are not supported yet")
    return cfg


def llama3_rope_scaling(rope_freqs, base: float, head_dim: int, context: int | None) -> dict:
    """mlx-lm's ``rope_scaling`` for Llama 3.1+ from llama.cpp's ``rope_freqs`` tensor.

    llama.cpp's converter stores Llama 3's rope scaling as one factor per rotary pair
    (1 for high frequencies, ``factor`` for low ones, smooth between); the parameters that
    made it are recovered by recomputing the factors for the known settings.

    Raises:
        UserError: the factors follow none of them.
    """
    import numpy as np

    stored = np.asarray(rope_freqs, dtype=np.float64).reshape(-1)
    factor = float(stored.max())
    wavelen = 2 * math.pi * base ** (np.arange(0, head_dim, 2) / head_dim)
    for old in sorted({8192, int(context / factor) if context else 8192}):
        for low, high in ((1.0, 4.0),):
            smooth = (old / wavelen - low) / (high - low)
            want = np.where(
                wavelen < old / high, 1.0, np.where(wavelen > old / low, factor, 1 / ((1 - smooth) / factor + smooth))
            )
            if want.shape == stored.shape and np.allclose(want, stored, rtol=1e-4):
                return {
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": low,
                    "high_freq_factor": high,
                    "original_max_position_embeddings": old,
                }
    raise UserError("the rope_freqs tensor does not follow Llama 3's rope scaling")
