"""Bias correction: give a quantized layer back the mean output of its float original.

Quantization errors do not average out: ``E[W x] - E[W_q x] = (W - W_q) E[x]`` is a
systematic shift per output channel, and in a sequential model the shifts of earlier
layers add to it. The corrected bias is ``b + E[y_float] - E[y_quant]``, where
``E[y_float]`` is the float model's mean output of the layer and ``E[y_quant]`` the mean
output of the quantized layer on the inputs the partly quantized model gives it
(empirical bias correction, Nagel et al. 2019, section 4.2), both on the calibration
images. A layer without a bias gets one (every quantized layer type here adds its
bias when it has one; the bundle config records it as ``"bias": true``).
"""

from __future__ import annotations

import numpy as np


def mean_output(kind: str, weight: np.ndarray, mean_patch: np.ndarray) -> np.ndarray:
    """Mean output per channel (without bias) of layer weights on inputs whose mean patch is given.

    Args:
        kind: 'linear', 'conv' or 'depthwise'.
        weight: the layer matrix: (out, k), or (taps, channels) for depthwise.
        mean_patch: (k,), or (taps, channels) for depthwise.
    """
    if kind == "depthwise":
        return np.sum(weight.astype(np.float64) * mean_patch, axis=0)
    return weight.astype(np.float64) @ mean_patch


def corrected_bias(
    kind: str, weight_q: np.ndarray, bias: np.ndarray | None, mean_patch_q: np.ndarray, float_mean_out: np.ndarray
) -> np.ndarray:
    """The bias that makes the quantized layer's mean output equal the float model's (float32)."""
    b = np.zeros(float_mean_out.shape, np.float64) if bias is None else bias.astype(np.float64)
    shift = float_mean_out - (mean_output(kind, weight_q, mean_patch_q) + b)
    return (b + shift).astype(np.float32)
