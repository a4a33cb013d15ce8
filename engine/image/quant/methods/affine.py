"""MLX's group-wise affine format, as codes: group parameters, rounding, packing.

A method chooses integer codes ``q`` in [0, 2^bits - 1] and per-group ``scales`` and
``biases``; MLX computes with ``scale * q + bias``. Here the parameters of a group
are those ``mx.quantize`` itself picks for the values given (then rounded to the
scale storage dtype, as the RTN path does), and the codes are packed as MLX packs
them: one little-endian bit stream per row, viewed as uint32 words (checked against
``mx.quantize`` for every bit width by the tests). So a triple built here is
indistinguishable from one ``mx.quantize`` wrote, and ``mx.dequantize`` of it gives
exactly the weights the method computed with.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine.image.quant.layers import round_scales


def group_params(block: np.ndarray, group_size: int, bits: int, scale_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """MLX's affine (scales, biases) for ``block`` (rows, k*group_size), each (rows, k), float32."""
    _, scales, biases = mx.quantize(mx.array(block.astype(np.float32)), group_size=group_size, bits=bits)
    scales, biases = round_scales(scales, scale_dtype), round_scales(biases, scale_dtype)
    return np.array(scales, dtype=np.float32), np.array(biases, dtype=np.float32)


CLIP_GRID = tuple(round(1.0 - 0.025 * i, 3) for i in range(25))  # 1.0 down to 0.4


def searched_group_params(
    block: np.ndarray,
    group_size: int,
    bits: int,
    scale_dtype: str,
    weight: np.ndarray | None = None,
    grid: tuple[float, ...] = CLIP_GRID,
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, MLX's (scales, biases) for a clipped range, the clip chosen to minimise the error.

    For each ratio ``p`` of ``grid`` a group's range [lo, hi] shrinks to [c + p (lo - c), c + p (hi - c)]
    (``c`` is 0 when the range spans it, else the range's middle); ``mx.quantize`` of the values
    clipped to it gives that range's parameters (so they are exactly what MLX would pick for such a
    group), and the group's squared rounding error of the *unclipped* values, weighted per element by
    ``weight`` (e.g. the Hessian diagonal: the output error a weight's error causes), picks the ratio.
    ``p = 1`` is plain ``group_params``, so the result is never worse than it on this measure.

    Args:
        block: (rows, k * group_size) values.
        weight: None (plain squared error) or an array broadcastable to ``block``.
        grid: the ratios tried, 1.0 first.
    """
    rows, cols = block.shape
    k = cols // group_size
    v = block.astype(np.float64).reshape(rows, k, group_size)
    lo, hi = v.min(-1, keepdims=True), v.max(-1, keepdims=True)
    centre = np.where((lo < 0) & (hi > 0), 0.0, (lo + hi) / 2)
    wgt = None if weight is None else np.broadcast_to(weight, block.shape).reshape(rows, k, group_size)
    best_err = np.full((rows, k), np.inf)
    best_s = np.zeros((rows, k), np.float32)
    best_b = np.zeros((rows, k), np.float32)
    for p in grid:
        clipped = np.clip(v, centre + p * (lo - centre), centre + p * (hi - centre)).reshape(rows, cols)
        s, b = group_params(clipped, group_size, bits, scale_dtype)
        q = round_codes(v, s[..., None].astype(np.float64), b[..., None].astype(np.float64), bits)
        err = (v - (s[..., None].astype(np.float64) * q + b[..., None])) ** 2
        err = (err if wgt is None else err * wgt).sum(-1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_s, best_b = np.where(better, s, best_s), np.where(better, b, best_b)
    return best_s, best_b


def round_codes(w: np.ndarray, scale: np.ndarray, bias: np.ndarray, bits: int) -> np.ndarray:
    """Nearest codes of ``w`` on the grid ``scale * q + bias`` (broadcasting), clipped to the code range."""
    q = np.rint((w - bias) / scale)
    return np.clip(q, 0, (1 << bits) - 1)


def dequantize(q: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``scale * q + bias`` in float32, the arithmetic of MLX's dequantize."""
    return (scale.astype(np.float32) * q.astype(np.float32) + bias.astype(np.float32)).astype(np.float32)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """(rows, cols) integer codes -> MLX's packed uint32 words (rows, cols * bits / 32)."""
    rows, cols = codes.shape
    c = codes.astype(np.uint32)
    stream = ((c[..., None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8).reshape(rows, cols * bits)
    return np.ascontiguousarray(np.packbits(stream, axis=-1, bitorder="little")).view(np.uint32)


def unpack_codes(packed: np.ndarray, bits: int, cols: int) -> np.ndarray:
    """The inverse of ``pack_codes``: (rows, cols) codes as int64."""
    rows = packed.shape[0]
    stream = np.unpackbits(np.ascontiguousarray(packed).view(np.uint8), axis=-1, bitorder="little")
    stream = stream[:, : cols * bits].reshape(rows, cols, bits).astype(np.int64)
    return (stream << np.arange(bits, dtype=np.int64)).sum(-1)


def triple(codes: np.ndarray, scales: np.ndarray, biases: np.ndarray, bits: int) -> tuple[mx.array, mx.array, mx.array]:
    """The (weight, scales, biases) arrays a quantized MLX layer stores for these codes."""
    return mx.array(pack_codes(codes, bits)), mx.array(scales.astype(np.float32)), mx.array(biases.astype(np.float32))


def expand(params: np.ndarray, group_size: int) -> np.ndarray:
    """Per-group (rows, groups) parameters repeated to (rows, groups * group_size)."""
    return np.repeat(params, group_size, axis=1)
