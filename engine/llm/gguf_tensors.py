"""GGUF tensors as MLX arrays, block by block, with llama.cpp's own gguf-py as the reader.

Every GGUF type lands in one of three places:

* floats (F32, F16, BF16) stay floats of the same precision;
* types whose blocks are 32 values with one scale and one offset map EXACTLY onto
  MLX's affine group-32 format (``w = scale * q + bias``): Q8_0, Q4_0, Q4_1, Q5_0,
  Q5_1, and Q4_K/Q5_K, whose 256-value super-blocks are eight 32-value sub-blocks with
  effective scale ``d * sc[j]`` and min ``dmin * m[j]``. Symmetric types become
  scale + bias (``q - 8`` -> ``bias = -8 * d``). The products are exact in float32,
  so ``mx.dequantize`` equals ``gguf.quants.dequantize`` bit for bit;
* everything else gguf-py can dequantize (Q6_K's 16-value blocks, Q2_K, Q3_K, the IQ
  and TQ types, MXFP4) is dequantized and requantized to the smallest MLX bit width
  with at least as many bits per weight as the GGUF type, and the max/mean absolute
  error of that step is recorded.

MLX 0.32's own ``mx.load`` must not be used for GGUF: it raises on Q5_0 and gives
Q4_K's high-nibble sub-blocks the previous sub-block's scale and min.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GROUP = 32
MLX_BITS = (2, 3, 4, 5, 6, 8)
FLOAT_TYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float32"}
EXACT_TYPES = {"Q8_0": 8, "Q4_0": 4, "Q4_1": 4, "Q5_0": 5, "Q5_1": 5, "Q4_K": 4, "Q5_K": 5}


@dataclass(frozen=True)
class TensorConversion:
    """How one GGUF tensor became MLX arrays (one row of the model card)."""

    name: str
    gguf_type: str
    shape: tuple[int, ...]
    mlx_format: str  # "float32", "float16", "bfloat16" or "affine 4-bit g32"
    bits: int | None  # MLX bits when quantized, else None
    exact: bool
    max_abs_error: float = 0.0
    mean_abs_error: float = 0.0


def requant_bits(gguf_type) -> int:
    """The smallest MLX bit width with at least as many bits per weight as ``gguf_type``."""
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[gguf_type]
    bpw = 8.0 * size / block
    return next((b for b in MLX_BITS if b >= bpw - 1e-9), 8)


def pack_bits(q: np.ndarray, bits: int) -> np.ndarray:
    """MLX's packed layout: each row of integers ``q`` (< 2**bits) as a little-endian bit stream of uint32."""
    rows, cols = q.shape
    if bits == 8:
        return np.ascontiguousarray(q, dtype=np.uint8).view("<u4").astype(np.uint32, copy=False)
    # Eight values fill exactly ``bits`` bytes: gather them in a uint64, keep its low ``bits`` bytes.
    eight = q.reshape(rows, cols // 8, 8)
    word = np.zeros((rows, cols // 8), dtype=np.uint64)
    for k in range(8):
        word |= eight[..., k].astype(np.uint64) << np.uint64(bits * k)
    packed = np.ascontiguousarray(word.astype("<u8").view(np.uint8).reshape(rows, cols // 8, 8)[..., :bits])
    return packed.reshape(rows, cols * bits // 8).view("<u4").astype(np.uint32, copy=False)


def _f16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)[..., 0]


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """16 bytes -> 32 values: low nibbles are values 0..15, high nibbles 16..31 (ggml's Q4_0/Q5_0 order)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _k_scales(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K's 12 bytes -> eight 6-bit scales and mins (llama.cpp's get_scale_min_k4)."""
    s = scales.astype(np.uint8)
    lo, hi = s[:, 0:4], s[:, 4:8]
    mix = s[:, 8:12]
    sc = np.concatenate([lo & 63, (mix & 0x0F) | ((lo >> 6) << 4)], axis=-1)
    mn = np.concatenate([hi & 63, (mix >> 4) | ((hi >> 6) << 4)], axis=-1)
    return sc.astype(np.float32), mn.astype(np.float32)


def affine_blocks(type_name: str, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw blocks (n, type_size) of an exact type -> (q (groups, 32) uint8, scale (groups,), bias (groups,))."""
    if type_name == "Q8_0":
        d = _f16(blocks[:, 0:2])
        q = blocks[:, 2:34].view(np.int8).astype(np.int16) + 128
        return q.astype(np.uint8), d, -128.0 * d
    if type_name in ("Q4_0", "Q4_1"):
        d = _f16(blocks[:, 0:2])
        if type_name == "Q4_0":
            return _nibbles(blocks[:, 2:18]), d, -8.0 * d
        return _nibbles(blocks[:, 4:20]), d, _f16(blocks[:, 2:4])
    if type_name in ("Q5_0", "Q5_1"):
        d = _f16(blocks[:, 0:2])
        off = 2 if type_name == "Q5_0" else 4
        qh = np.ascontiguousarray(blocks[:, off : off + 4]).view("<u4")  # (n, 1): bit j is value j's fifth bit
        high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)
        q = _nibbles(blocks[:, off + 4 : off + 20]) | (high << 4)
        bias = -16.0 * d if type_name == "Q5_0" else _f16(blocks[:, 2:4])
        return q, d, bias
    if type_name in ("Q4_K", "Q5_K"):
        n = blocks.shape[0]
        d, dmin = _f16(blocks[:, 0:2]), _f16(blocks[:, 2:4])
        sc, mn = _k_scales(blocks[:, 4:16])
        scale = (d[:, None] * sc).reshape(-1)
        bias = -(dmin[:, None] * mn).reshape(-1)
        qs = blocks[:, -128:].reshape(n, 4, 32)  # four chunks of 64 values: low nibbles, then high
        q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32)
        if type_name == "Q5_K":
            qh = blocks[:, 16:48]  # bit j of byte l is value l of sub-block j's fifth bit
            q = q | (((qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1) << 4)
        return q.reshape(n * 8, 32).astype(np.uint8), scale, bias
    raise ValueError(f"{type_name} has no exact MLX form")


def convert_tensor(name: str, tensor_type, data: np.ndarray, shape: tuple[int, ...], quantize: bool):
    """One GGUF tensor -> ({"weight": ..., ["scales", "biases"]} numpy arrays, TensorConversion).

    Args:
        name: the GGUF tensor name (for the record).
        tensor_type: its gguf.GGMLQuantizationType.
        data: gguf-py's ReaderTensor.data (memmapped; raw bytes for quantized types).
        shape: the logical shape, rows first (numpy order).
        quantize: whether the tensor feeds an MLX layer that can be quantized (Linear,
            Embedding with rows of a multiple of 32); otherwise it is dequantized to float32.

    Raises:
        NotImplementedError: gguf-py cannot dequantize the type.
    """
    from gguf.quants import dequantize

    tname = tensor_type.name
    if tname in FLOAT_TYPES:
        if tname == "BF16":  # kept as float32 here; the loader casts it back to bfloat16 (exact)
            arr = dequantize(np.ascontiguousarray(data).view(np.uint8).reshape(-1), tensor_type).reshape(shape)
        else:
            arr = np.asarray(data).reshape(shape).astype(np.float32 if tname == "F64" else data.dtype, copy=False)
        return {"weight": arr}, TensorConversion(name, tname, shape, FLOAT_TYPES[tname], None, True)
    if not quantize or len(shape) != 2 or shape[-1] % GROUP:
        arr = dequantize(np.asarray(data), tensor_type).reshape(shape).astype(np.float32)
        return {"weight": arr}, TensorConversion(name, tname, shape, "float32", None, True)
    rows, cols = shape
    if tname in EXACT_TYPES:
        from gguf import GGML_QUANT_SIZES

        bits = EXACT_TYPES[tname]
        blocks = np.asarray(data).reshape(-1, GGML_QUANT_SIZES[tensor_type][1])
        q, scale, bias = affine_blocks(tname, blocks)
        arrays = {
            "weight": pack_bits(q.reshape(rows, cols), bits),
            "scales": scale.reshape(rows, cols // GROUP).astype(np.float32),
            "biases": bias.reshape(rows, cols // GROUP).astype(np.float32),
        }
        return arrays, TensorConversion(name, tname, shape, f"affine {bits}-bit g{GROUP}", bits, True)
    bits = requant_bits(tensor_type)
    ref = dequantize(np.asarray(data), tensor_type).reshape(shape).astype(np.float32)
    q, scale, bias = affine_quantize(ref, bits)
    err = np.abs(
        (q.astype(np.float32).reshape(rows, -1, GROUP) * scale[..., None] + bias[..., None]).reshape(shape) - ref
    )
    arrays = {"weight": pack_bits(q, bits), "scales": scale, "biases": bias}
    conv = TensorConversion(
        name, tname, shape, f"affine {bits}-bit g{GROUP}", bits, False, float(err.max()), float(err.mean())
    )
    return arrays, conv


def affine_quantize(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max affine quantization per group of 32 (MLX's scheme): (q uint8 (rows, cols), scales, biases)."""
    rows, cols = w.shape
    g = w.reshape(rows, cols // GROUP, GROUP)
    lo, hi = g.min(axis=-1), g.max(axis=-1)
    levels = float(2**bits - 1)
    scale = np.where(hi > lo, (hi - lo) / levels, 1.0).astype(np.float32)
    q = np.clip(np.round((g - lo[..., None]) / scale[..., None]), 0, levels).astype(np.uint8)
    return q.reshape(rows, cols), scale, lo.astype(np.float32)


def describe(conversions) -> dict[str, str]:
    """The model card's per-tensor line: GGUF type -> MLX format, with the error of requantized ones."""
    out = {}
    for c in conversions:
        text = f"{c.gguf_type} -> {c.mlx_format}"
        text += (
            " (exact)" if c.exact else f" (requantized, max error {c.max_abs_error:.3g}, mean {c.mean_abs_error:.3g})"
        )
        out[c.name] = text
    return out


def bits_per_weight(gguf_type) -> float:
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[gguf_type]
    return 8.0 * size / block if block else math.nan
