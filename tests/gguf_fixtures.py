"""GGUF test fixtures made with llama.cpp's own gguf-py: quantized blocks and tiny model files.

``gguf.quants.quantize`` packs the types it implements (Q4_0/1, Q5_0/1, Q8_0, BF16, F16);
the K-quants it cannot write are hand-packed from the block spec (ggml-common.h): random
payload bytes, with the float16 super-block scales set to sane values.
"""

from __future__ import annotations

import zlib

import numpy as np


def k_quant_blocks(qtype, n_blocks: int, rng: np.random.Generator, scale: float = 0.01) -> np.ndarray:
    """Random valid blocks of a K-quant type (raw bytes, (n_blocks, type_size))."""
    from gguf import GGML_QUANT_SIZES
    from gguf import GGMLQuantizationType as T

    size = GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)

    def put(offset: int, values: np.ndarray) -> None:
        blocks[:, offset : offset + 2] = values.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)

    d = (scale * rng.uniform(0.5, 1.0, n_blocks)).astype(np.float32)  # about the largest |value|
    if qtype in (T.Q4_K, T.Q5_K):  # d, dmin, scales[12], (qh[32]), qs[128]
        top = 15 if qtype == T.Q4_K else 31
        put(0, d / (63 * top))
        put(2, d / (63 * 2))
    elif qtype == T.Q6_K:  # ql[128], qh[64], scales[16] (int8), d
        blocks[:, 192:208] = rng.integers(-60, 61, size=(n_blocks, 16), dtype=np.int8).view(np.uint8)
        put(208, d / (60 * 32))
    elif qtype == T.Q2_K:  # scales[16], qs[64], d, dmin
        put(80, d / 45)
        put(82, d / 30)
    elif qtype == T.Q3_K:  # hmask[32], qs[64], scales[12], d
        put(108, d / 128)
    else:
        raise ValueError(qtype)
    return blocks


def quantized_tensor(w: np.ndarray, qtype, rng: np.random.Generator) -> np.ndarray:
    """``w`` (rows, cols) in GGUF type ``qtype`` as raw bytes: gguf-py's quantizer, or K-quant blocks."""
    from gguf import GGML_QUANT_SIZES
    from gguf import GGMLQuantizationType as T
    from gguf.quants import quantize

    if qtype in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
        rows, cols = w.shape
        blocks = k_quant_blocks(qtype, rows * cols // 256, rng, scale=float(np.abs(w).max()))
        return blocks.reshape(rows, cols // 256 * GGML_QUANT_SIZES[qtype][1])
    return quantize(w.astype(np.float32), qtype)


def write_gguf(path, arch: str, tensors: dict, kv: dict | None = None) -> None:
    """A GGUF file by gguf-py's GGUFWriter: ``tensors`` maps names to (float array or raw blocks, GGML type)."""
    import gguf
    from gguf import GGMLQuantizationType as T

    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in (kv or {}).items():
        add_value(writer, key, value)
    for name, (w, qtype) in tensors.items():
        if w.dtype == np.uint8:  # raw blocks already
            writer.add_tensor(name, w, raw_dtype=qtype)
        elif qtype == T.F32:
            writer.add_tensor(name, np.ascontiguousarray(w, dtype=np.float32))
        elif qtype == T.F16:
            writer.add_tensor(name, np.ascontiguousarray(w, dtype=np.float16))
        else:
            writer.add_tensor(name, quantized_tensor(w, qtype, rng), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def add_value(writer, key: str, value) -> None:
    """A metadata value with the GGUF type llama.cpp's converter uses for it."""
    import gguf

    V = gguf.GGUFValueType
    if isinstance(value, bool):
        writer.add_key_value(key, value, V.BOOL)
    elif isinstance(value, int):
        writer.add_key_value(key, value, V.UINT32)
    elif isinstance(value, float):
        writer.add_key_value(key, value, V.FLOAT32)
    elif isinstance(value, str):
        writer.add_key_value(key, value, V.STRING)
    elif isinstance(value, list) and value and isinstance(value[0], str):
        writer.add_key_value(key, value, V.ARRAY, sub_type=V.STRING)
    elif isinstance(value, list) and value and isinstance(value[0], float):
        writer.add_key_value(key, value, V.ARRAY, sub_type=V.FLOAT32)
    elif isinstance(value, list):
        writer.add_key_value(key, value, V.ARRAY, sub_type=V.INT32)
    else:
        raise TypeError(f"{key}: {type(value)}")
