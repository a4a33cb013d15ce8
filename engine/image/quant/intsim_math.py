"""The arithmetic of ONNX Runtime's QDQ quantization: scales, zero points, rounding, weights, biases.

Mirrors ``onnxruntime.quantization.quant_utils.compute_scale_zp`` and ONNX ``QuantizeLinear``:
ranges are widened to contain zero; ``scale = (rmax - rmin) / (qmax - qmin)`` in float64, stored
as float32; ``zero_point = round(qmin - rmin / scale)`` (round half to even); quantizing is
``saturate(round_half_even(x / scale) + zero_point)``. Weights are symmetric int8 per output
channel over [-127, 127]; a bias is int32 with ``scale = input_scale * weight_scale``. An unfused
BatchNorm gets the same treatment: gamma one int8 scale for the tensor, beta an int32 bias.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

ACT_TYPES = {"uint8": (0, 255), "int8": (-128, 127)}
WEIGHT_QMAX = 127


def qparams(lo: float, hi: float, act_type: str = "uint8") -> tuple[float, int]:
    """(float32 scale, zero point) of an asymmetric range, exactly as ORT's compute_scale_zp."""
    qmin, qmax = ACT_TYPES[act_type]
    rmin = min(np.float32(lo), np.float32(0.0))
    rmax = max(np.float32(hi), np.float32(0.0))
    scale = np.float64(rmax) - np.float64(rmin)
    scale = scale / np.float64(qmax - qmin)
    if scale < np.finfo(np.float32).tiny:
        return 1.0, 0
    zp = int(np.round(qmin - np.float64(rmin) / scale))
    return float(np.float32(scale)), zp


def fake_quant_np(x: np.ndarray, scale: float, zp: int, act_type: str = "uint8") -> np.ndarray:
    qmin, qmax = ACT_TYPES[act_type]
    q = np.clip(np.round(np.asarray(x, np.float32) / np.float32(scale)) + zp, qmin, qmax)
    return ((q - zp) * np.float32(scale)).astype(np.float32)


def fake_quant(x: mx.array, scale: float, zp: int, act_type: str = "uint8") -> mx.array:
    """QuantizeLinear then DequantizeLinear in float32 (mx.round rounds half to even, as ORT)."""
    qmin, qmax = ACT_TYPES[act_type]
    s = mx.array(scale, dtype=mx.float32)
    q = mx.clip(mx.round(x / s) + zp, qmin, qmax)
    return (q - zp) * s


def weight_scales(w: np.ndarray) -> np.ndarray:
    """Per-output-channel (axis 0) float32 scales of symmetric int8: max|w| / 127, as ORT per_channel=True."""
    w = np.asarray(w, np.float32)
    flat = w.reshape(w.shape[0], -1)
    rmin = np.minimum(flat.min(axis=1), 0.0)
    rmax = np.maximum(flat.max(axis=1), 0.0)
    absmax = np.maximum(np.abs(rmin), np.abs(rmax)).astype(np.float64)
    scale = (2 * absmax / (2 * WEIGHT_QMAX)).astype(np.float32)
    return np.where(scale < np.finfo(np.float32).tiny, np.float32(1.0), scale)


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dequantized float32 weight, per-channel scales)."""
    w = np.asarray(w, np.float32)
    scale = weight_scales(w)
    s = scale.reshape((-1,) + (1,) * (w.ndim - 1))
    q = np.clip(np.round(w / s), -WEIGHT_QMAX, WEIGHT_QMAX)
    return (q * s).astype(np.float32), scale


def quantize_per_tensor(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """(dequantized float32 array, scale) of one symmetric int8 scale for the whole array (a BatchNorm's gamma)."""
    w = np.asarray(w, np.float32)
    deq, scale = quantize_weight(w.reshape(1, -1))
    return deq.reshape(w.shape), scale[0]


def quantize_bias(b: np.ndarray, input_scale: float, w_scales: np.ndarray) -> np.ndarray:
    """Dequantized int32 bias with scale input_scale * weight_scale per channel."""
    bias_scale = (np.float32(input_scale) * w_scales).astype(np.float32)
    bias_scale = np.where(bias_scale == 0, np.float32(1.0), bias_scale)
    q = np.round(np.asarray(b, np.float64) / bias_scale.astype(np.float64))
    q = np.clip(q, np.iinfo(np.int32).min, np.iinfo(np.int32).max)
    return (q * bias_scale).astype(np.float32)
