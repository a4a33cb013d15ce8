"""GGUF tensor types -> MLX: exact or requantized (with the error), mx.load beside gguf-py, and the memory
a GGUF model takes to open. All in one run, with its settings printed.

1. For each GGUF type, one (rows x cols) tensor written with gguf-py's GGUFWriter (its quantizer where
   it has one, otherwise random blocks with sane float16 scales), converted by the app, and compared
   with gguf-py's dequantizer: the MLX format, max and mean absolute error relative to the tensor's
   RMS, and the conversion speed.
2. MLX's own mx.load on the same Q4_K and Q5_0 files: its error against gguf-py, or what it raises.
3. A synthetic llama GGUF in a Q4_K_M-like mix (Q8_0 embeddings, Q4_K, Q6_K, Q5_0): file size, load
   time and peak resident memory of a fresh process that loads it, as a multiple of the file size.

    python bench/gguf_types.py [--rows 1024] [--cols 1024] [--hidden 1024] [--layers 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TYPES = [
    "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K",
    "Q6_K", "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS", "IQ3_XXS", "IQ2_XXS", "MXFP4",
]  # fmt: skip


def random_blocks(qtype, n_blocks: int, rng, scale: float):
    """Random payload bytes with a sane float16 d at the front (the IQ layouts) or as the fixtures set it."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES

    from tests.gguf_fixtures import k_quant_blocks

    if qtype.name in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"):
        return k_quant_blocks(qtype, n_blocks, rng, scale)
    size = GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    d = np.full(n_blocks, scale / 8, dtype=np.float16)
    blocks[:, 0:2] = d.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def write_one(path: Path, qtype, rows: int, cols: int, rng) -> None:
    import gguf
    import numpy as np
    from gguf import GGML_QUANT_SIZES
    from gguf.quants import quantize

    w = rng.standard_normal((rows, cols)).astype(np.float32) * 0.02
    writer = gguf.GGUFWriter(str(path), "llama")
    if qtype.name in ("F32", "F16"):
        writer.add_tensor("w", w.astype(np.float32 if qtype.name == "F32" else np.float16))
    else:
        try:
            raw = quantize(w, qtype)
        except NotImplementedError:
            block, size = GGML_QUANT_SIZES[qtype]
            raw = random_blocks(qtype, rows * cols // block, rng, 0.05).reshape(rows, cols // block * size)
        writer.add_tensor("w", raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def types_table(rows: int, cols: int, tmp: Path) -> None:
    import gguf
    import mlx.core as mx
    import numpy as np
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize

    from engine.llm.gguf_tensors import convert_tensor

    rng = np.random.default_rng(0)
    print(f"1. GGUF type -> MLX, one {rows}x{cols} tensor each; errors against gguf-py's dequantizer, / RMS")
    print(f"   {'type':<8}{'MLX format':<20}{'kind':<13}{'max |err|/rms':>14}{'mean |err|/rms':>16}{'MB/s':>8}")
    for name in TYPES:
        qtype = T[name]
        path = tmp / f"{name}.gguf"
        write_one(path, qtype, rows, cols, rng)
        t = gguf.GGUFReader(str(path)).tensors[0]
        ref = dequantize(t.data, qtype).reshape(rows, cols).astype(np.float32)
        t0 = time.perf_counter()
        arrays, conv = convert_tensor(t.name, qtype, t.data, (rows, cols), quantize=True)
        seconds = time.perf_counter() - t0
        if "scales" in arrays:
            w, s, b = (mx.array(arrays[k]) for k in ("weight", "scales", "biases"))
            got = np.array(mx.dequantize(w, s, b, group_size=32, bits=conv.bits))
        else:
            got = np.array(mx.array(arrays["weight"]).astype(mx.float32))
        err = np.abs(got - ref)
        rms = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2)))
        kind = "exact" if conv.exact else "requantized"
        print(
            f"   {name:<8}{conv.mlx_format:<20}{kind:<13}{err.max() / rms:>14.2e}{err.mean() / rms:>16.2e}"
            f"{t.n_bytes / 1e6 / seconds:>8.0f}"
        )


def mx_load_check(rows: int, cols: int, tmp: Path) -> None:
    import gguf
    import mlx.core as mx
    import numpy as np
    from gguf.quants import dequantize

    print("2. mx.load (MLX's GGUF reader) on the same files")
    for name in ("Q4_K", "Q5_0", "Q6_K", "Q8_0"):
        path = tmp / f"{name}.gguf"
        t = gguf.GGUFReader(str(path)).tensors[0]
        ref = dequantize(t.data, t.tensor_type).reshape(rows, cols)
        try:
            loaded = mx.load(str(path))
        except Exception as exc:  # what MLX does with the type is the measurement
            print(f"   {name:<6} raises {type(exc).__name__}: {str(exc).splitlines()[0][:70]}")
            continue
        w = loaded["w"]
        if w.dtype == mx.uint32 and "w.scales" in loaded:
            w = mx.dequantize(w, loaded["w.scales"], loaded["w.biases"], group_size=32, bits=8)
        got = np.array(w.astype(mx.float32)).reshape(rows, cols)
        print(
            f"   {name:<6} max |mx.load - gguf-py| = {np.abs(got - ref).max():.3g} (values up to {np.abs(ref).max():.3g})"
        )


def model_memory(hidden: int, layers: int, tmp: Path) -> None:
    import numpy as np
    from gguf import GGMLQuantizationType as T

    from tests.gguf_fixtures import write_gguf
    from tests.gguf_reference import byte_vocab

    tokens, merges = byte_vocab()
    tokens = tokens + [f"<extra_{i}>" for i in range(4096 - len(tokens))]
    ffn, heads, rng = hidden * 11 // 4 // 256 * 256, hidden // 64, np.random.default_rng(1)

    def mat(r, c):
        return rng.standard_normal((r, c)).astype(np.float32) * 0.02

    tensors = {
        "token_embd.weight": (mat(len(tokens), hidden), T.Q8_0),
        "output.weight": (mat(len(tokens), hidden), T.Q6_K),
        "output_norm.weight": (np.ones(hidden, np.float32), T.F32),
    }
    for i in range(layers):
        b = f"blk.{i}"
        for n, shape, t in (
            ("attn_q", (hidden, hidden), T.Q4_K),
            ("attn_k", (hidden, hidden), T.Q4_K),
            ("attn_v", (hidden, hidden), T.Q6_K if i % 2 else T.Q5_0),
            ("attn_output", (hidden, hidden), T.Q4_K),
            ("ffn_gate", (ffn, hidden), T.Q4_K),
            ("ffn_up", (ffn, hidden), T.Q4_K),
            ("ffn_down", (hidden, ffn), T.Q6_K if i % 2 else T.Q4_K),
        ):
            tensors[f"{b}.{n}.weight"] = (mat(*shape), t)
        tensors[f"{b}.attn_norm.weight"] = (np.ones(hidden, np.float32), T.F32)
        tensors[f"{b}.ffn_norm.weight"] = (np.ones(hidden, np.float32), T.F32)
    kv = {
        "llama.context_length": 4096,
        "llama.embedding_length": hidden,
        "llama.block_count": layers,
        "llama.feed_forward_length": ffn,
        "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": heads,
        "llama.rope.dimension_count": 64,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [1] * len(tokens),
        "tokenizer.ggml.merges": merges,
    }
    path = tmp / "q4_k_m-like.gguf"
    write_gguf(path, "llama", tensors, kv)
    size = path.stat().st_size
    child = (
        "import resource, time, json\n"
        "import mlx.core as mx\n"
        "from engine.llm.loader import load_language_model\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t0 = time.perf_counter()\n"
        f"lm = load_language_model({str(path)!r})\n"
        "sec = time.perf_counter() - t0\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'seconds': sec, 'base_kb': base, 'peak_kb': peak, 'bytes': lm.card.bytes,"
        " 'recipe': lm.card.recipe}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, check=True, env=_env()
    ).stdout
    m = json.loads(out.strip().splitlines()[-1])
    grown = (m["peak_kb"] - m["base_kb"]) * 1024
    print(f"3. Opening a Q4_K_M-like llama GGUF (hidden {hidden}, {layers} layers, vocabulary {len(tokens)})")
    print(
        f"   file {size / 1e6:.1f} MB; loaded in {m['seconds']:.2f} s as '{m['recipe']}', {m['bytes'] / 1e6:.1f} MB of"
    )
    print(
        f"   weights in memory ({m['bytes'] / size:.2f}x the file); peak RSS grew {grown / 1e6:.1f} MB while "
        f"loading = {grown / size:.2f}x the file (the memory guard reserves {2 * 1.3:.1f}x on the CPU backend)"
    )


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    import gguf
    import mlx.core as mx

    print(f"gguf-py {gguf.__version__ if hasattr(gguf, '__version__') else '?'}, MLX {mx.__version__}, CPU backend")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        types_table(args.rows, args.cols, tmp)
        mx_load_check(args.rows, args.cols, tmp)
        model_memory(args.hidden, args.layers, tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
