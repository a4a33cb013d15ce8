"""Tiny GGUF language models written the way llama.cpp's converter writes them, and a NumPy
float32 forward pass that runs straight on gguf-py's dequantized tensors in llama.cpp's own
layout (interleaved rotary pairs for llama, NeoX halves otherwise; Gemma norms as stored, +1
included). The reference never goes through the app's name maps or un-permutation.
"""

from __future__ import annotations

import math

import numpy as np

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN = 256, 4, 2, 64, 512

# Per architecture: rotary layout, attention biases, q/k norms, Gemma, fused phi3 projections,
# tied output, layers, sliding window.
SPECS = {
    "llama": dict(neox=False, bias=False, qk_norm=False, gemma=False, fused=False, tied=False, layers=2),
    "mistral": dict(neox=False, bias=False, qk_norm=False, gemma=False, fused=False, tied=True, layers=2),
    "qwen2": dict(neox=True, bias=True, qk_norm=False, gemma=False, fused=False, tied=True, layers=2),
    "qwen3": dict(neox=True, bias=False, qk_norm=True, gemma=False, fused=False, tied=False, layers=2),
    "gemma2": dict(neox=True, bias=False, qk_norm=False, gemma=True, fused=False, tied=True, layers=2),
    "gemma3": dict(neox=True, bias=False, qk_norm=True, gemma=True, fused=False, tied=True, layers=6),
    "phi3": dict(neox=True, bias=False, qk_norm=False, gemma=False, fused=True, tied=False, layers=2),
}
ROPE_BASE = {"llama": 500000.0, "mistral": 1000000.0, "gemma3": 1000000.0}
GEMMA3_WINDOW, GEMMA2_CAPS = 4, (50.0, 30.0)


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: HF "rotate half" rows -> interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def model_tensors(arch: str, vocab: int, rng: np.random.Generator, requantized: bool = False) -> dict:
    """GGUF name -> (float32 array in GGUF layout, GGML type); mixed types per file, as in Q4_K_M files.

    By default only types with an exact MLX form (and floats); ``requantized`` adds Q6_K, Q3_K, Q2_K.
    """
    from gguf import GGMLQuantizationType as T

    spec = SPECS[arch]
    cycle = [T.Q4_K, T.Q5_0, T.Q8_0, T.Q4_1, T.Q5_K, T.Q4_0, T.Q5_1, T.F16, T.BF16]
    if requantized:
        cycle = [T.Q6_K, T.Q4_K, T.Q3_K, T.Q5_0, T.Q2_K, T.Q8_0]
    turn = iter(range(10_000))

    def mat(rows, cols, scale=None):
        return rng.standard_normal((rows, cols)).astype(np.float32) * (scale or 1.0 / math.sqrt(cols))

    def qtype():
        return cycle[next(turn) % len(cycle)]

    def norm(n):
        w = (rng.standard_normal(n) * 0.1).astype(np.float32)
        return w + 1.0  # Gemma's converter stores 1 + w; mlx-lm's Gemma RMSNorm adds the 1 itself

    out = {"token_embd.weight": (mat(vocab, HIDDEN, 0.5), T.Q8_0), "output_norm.weight": (norm(HIDDEN), T.F32)}
    if not spec["tied"]:
        out["output.weight"] = (mat(vocab, HIDDEN), T.Q6_K if requantized else T.Q8_0)
    for i in range(spec["layers"]):
        b = f"blk.{i}"
        q, k, v = mat(HEADS * HEAD_DIM, HIDDEN), mat(KV_HEADS * HEAD_DIM, HIDDEN), mat(KV_HEADS * HEAD_DIM, HIDDEN)
        if not spec["neox"]:
            q, k = llama_cpp_permute(q, HEADS), llama_cpp_permute(k, KV_HEADS)
        if spec["fused"]:
            out[f"{b}.attn_qkv.weight"] = (np.concatenate([q, k, v]), qtype())
            out[f"{b}.ffn_up.weight"] = (mat(2 * FFN, HIDDEN), qtype())
        else:
            out[f"{b}.attn_q.weight"], out[f"{b}.attn_k.weight"] = (q, qtype()), (k, qtype())
            out[f"{b}.attn_v.weight"] = (v, qtype())
            out[f"{b}.ffn_gate.weight"], out[f"{b}.ffn_up.weight"] = (
                (mat(FFN, HIDDEN), qtype()),
                (mat(FFN, HIDDEN), qtype()),
            )
        out[f"{b}.attn_output.weight"] = (mat(HIDDEN, HEADS * HEAD_DIM), qtype())
        out[f"{b}.ffn_down.weight"] = (mat(HIDDEN, FFN), qtype())
        out[f"{b}.attn_norm.weight"] = (norm(HIDDEN), T.F32)
        out[f"{b}.ffn_norm.weight"] = (norm(HIDDEN), T.F32)
        if spec["bias"]:
            for name, rows in (("attn_q", HEADS), ("attn_k", KV_HEADS), ("attn_v", KV_HEADS)):
                out[f"{b}.{name}.bias"] = ((rng.standard_normal(rows * HEAD_DIM) * 0.1).astype(np.float32), T.F32)
        if spec["qk_norm"]:
            out[f"{b}.attn_q_norm.weight"] = (norm(HEAD_DIM), T.F32)
            out[f"{b}.attn_k_norm.weight"] = (norm(HEAD_DIM), T.F32)
        if spec["gemma"]:
            out[f"{b}.post_attention_norm.weight"] = (norm(HIDDEN), T.F32)
            out[f"{b}.post_ffw_norm.weight"] = (norm(HIDDEN), T.F32)
    return out


def model_metadata(arch: str, tokens: list[str], merges: list[str]) -> dict:
    spec = SPECS[arch]
    kv = {
        f"{arch}.context_length": 2048,
        f"{arch}.embedding_length": HIDDEN,
        f"{arch}.block_count": spec["layers"],
        f"{arch}.feed_forward_length": FFN,
        f"{arch}.attention.head_count": HEADS,
        f"{arch}.attention.head_count_kv": KV_HEADS,
        f"{arch}.attention.key_length": HEAD_DIM,
        f"{arch}.attention.value_length": HEAD_DIM,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-6,
        f"{arch}.rope.dimension_count": HEAD_DIM,
        f"{arch}.rope.freq_base": ROPE_BASE.get(arch, 10000.0),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [1] * len(tokens),
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.eos_token_id": 0,
    }
    if arch == "gemma3":
        kv["gemma3.attention.sliding_window"] = GEMMA3_WINDOW
    if arch == "gemma2":
        kv["gemma2.attention.sliding_window"] = 4096
        kv["gemma2.attn_logit_softcapping"], kv["gemma2.final_logit_softcapping"] = GEMMA2_CAPS
    return kv


def byte_vocab() -> tuple[list[str], list[str]]:
    """A GPT-2 byte-level vocabulary: the 256 byte symbols plus two merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = list(bytes_to_unicode().values()) + ["Ġt", "he"]
    return tokens, ["Ġ t", "h e"]


def _rms(x: np.ndarray, w: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope(x: np.ndarray, base: float, neox: bool) -> np.ndarray:
    """x (heads, L, d): ggml's rope, NORM mode (pairs 2i, 2i+1) or NEOX mode (pairs i, i + d/2)."""
    d = x.shape[-1]
    theta = np.arange(x.shape[1])[:, None] * base ** (-np.arange(0, d, 2) / d)  # (L, d/2)
    cos, sin = np.cos(theta), np.sin(theta)
    if neox:
        a, b = x[..., : d // 2], x[..., d // 2 :]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
    return out


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _silu(x):
    return x / (1 + np.exp(-x))


def reference_logits(arch: str, w: dict, ids: list[int]) -> np.ndarray:
    """Logits (L, vocab) of the GGUF model by llama.cpp's graph, in float64 on float32 weights."""
    spec = SPECS[arch]
    w = {k: v.astype(np.float64) for k, v in w.items()}
    L = len(ids)
    x = w["token_embd.weight"][ids]
    if spec["gemma"]:
        x = x * math.sqrt(HIDDEN)
    for i in range(spec["layers"]):
        b = f"blk.{i}."
        h = _rms(x, w[b + "attn_norm.weight"])
        if spec["fused"]:
            q, k, v = np.split(h @ w[b + "attn_qkv.weight"].T, [HEADS * HEAD_DIM, (HEADS + KV_HEADS) * HEAD_DIM], -1)
        else:
            q, k, v = (h @ w[b + f"attn_{n}.weight"].T for n in "qkv")
        if spec["bias"]:
            q, k, v = q + w[b + "attn_q.bias"], k + w[b + "attn_k.bias"], v + w[b + "attn_v.bias"]
        q = q.reshape(L, HEADS, HEAD_DIM).transpose(1, 0, 2)
        k = k.reshape(L, KV_HEADS, HEAD_DIM).transpose(1, 0, 2)
        v = v.reshape(L, KV_HEADS, HEAD_DIM).transpose(1, 0, 2)
        if spec["qk_norm"]:
            q, k = _rms(q, w[b + "attn_q_norm.weight"]), _rms(k, w[b + "attn_k_norm.weight"])
        sliding = arch == "gemma3" and (i + 1) % 6 != 0
        base = 10000.0 if sliding else ROPE_BASE.get(arch, 10000.0)
        q, k = _rope(q, base, spec["neox"]), _rope(k, base, spec["neox"])
        k, v = np.repeat(k, HEADS // KV_HEADS, axis=0), np.repeat(v, HEADS // KV_HEADS, axis=0)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(HEAD_DIM)
        if arch == "gemma2":
            scores = GEMMA2_CAPS[0] * np.tanh(scores / GEMMA2_CAPS[0])
        pos = np.arange(L)
        allowed = pos[None, :] <= pos[:, None]
        if sliding:
            allowed &= pos[:, None] - pos[None, :] < GEMMA3_WINDOW
        scores = np.where(allowed, scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        att = (p / p.sum(-1, keepdims=True)) @ v
        o = att.transpose(1, 0, 2).reshape(L, HEADS * HEAD_DIM) @ w[b + "attn_output.weight"].T
        if spec["gemma"]:
            x = x + _rms(o, w[b + "post_attention_norm.weight"])
        else:
            x = x + o
        h = _rms(x, w[b + "ffn_norm.weight"])
        if spec["fused"]:
            gate, up = np.split(h @ w[b + "ffn_up.weight"].T, 2, -1)
        else:
            gate, up = h @ w[b + "ffn_gate.weight"].T, h @ w[b + "ffn_up.weight"].T
        act = _gelu_tanh(gate) if spec["gemma"] else _silu(gate)
        f = (act * up) @ w[b + "ffn_down.weight"].T
        x = x + (_rms(f, w[b + "post_ffw_norm.weight"]) if spec["gemma"] else f)
    x = _rms(x, w["output_norm.weight"])
    logits = x @ w.get("output.weight", w["token_embd.weight"]).T
    if arch == "gemma2":
        logits = GEMMA2_CAPS[1] * np.tanh(logits / GEMMA2_CAPS[1])
    return logits


def write_model(path, arch: str, seed: int = 0, requantized: bool = False) -> None:
    from tests.gguf_fixtures import write_gguf

    tokens, merges = byte_vocab()
    tensors = model_tensors(arch, len(tokens), np.random.default_rng(seed), requantized)
    write_gguf(path, arch, tensors, model_metadata(arch, tokens, merges))


def dequantized(path) -> dict:
    """Every tensor of a GGUF file as float32 by gguf-py's reader and dequantizer."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    out = {}
    for t in GGUFReader(str(path)).tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        out[t.name] = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
    return out
