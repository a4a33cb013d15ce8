"""An independent NumPy GPTQ, straight from the paper, for the method tests.

Frantar et al. 2023 (GPTQ), equations (2) and (3) applied one column at a time: quantize
column q, spread its error ``(w_q - quant(w_q)) / [H^-1]_qq * [H^-1]_{q,:}`` over the
remaining columns, then remove q from the inverse Hessian by Gaussian elimination
(``H^-1 -= H^-1_{:,q} H^-1_{q,:} / [H^-1]_qq``). No Cholesky factor, no lazy blocks:
the engine's blocked Cholesky form must agree with this. Group parameters follow MLX's
affine rule (written out here from the outside, and checked against ``mx.quantize``).
"""

from __future__ import annotations

import numpy as np


def mlx_affine_params(groups: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) MLX's affine quantize picks for each row of ``groups`` (..., group_size), float32."""
    g = groups.astype(np.float32)
    n = np.float32((1 << bits) - 1)
    w_max, w_min = g.max(-1), g.min(-1)
    mask = np.abs(w_min) > np.abs(w_max)
    scale = np.maximum((w_max - w_min) / n, np.float32(1e-7))
    scale = np.where(mask, scale, -scale)
    edge = np.where(mask, w_min, w_max)
    q0 = np.rint(edge / scale)
    scale = np.where(q0 != 0, edge / np.where(q0 != 0, q0, 1), scale)
    bias = np.where(q0 == 0, 0, edge)
    return scale.astype(np.float32), bias.astype(np.float32)


def _quant(col: np.ndarray, scale: np.ndarray, bias: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.clip(np.rint((col - bias.astype(np.float64)) / scale.astype(np.float64)), 0, (1 << bits) - 1)
    return q, (scale * q.astype(np.float32) + bias).astype(np.float32)


def _prepare(w, h, damp):
    w, h = w.astype(np.float64).copy(), h.astype(np.float64).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * np.mean(np.diag(h)) * np.eye(len(h))
    return w, h


def gptq_reference(w, h, group_size, bits, damp=0.01, act_order=False):
    """(codes, dequantized weights) of GPTQ on ``w`` (rows, cols) with input second moment ``h``."""
    rows, cols = w.shape
    w, h = _prepare(w, h, damp)
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(cols)
    params = {}
    if act_order:  # static groups: fixed from the original weights
        for g in range(cols // group_size):
            params[g] = mlx_affine_params(w[:, g * group_size : (g + 1) * group_size], bits)
    hinv = np.linalg.inv(h)
    codes = np.zeros((rows, cols), np.int64)
    deq = np.zeros((rows, cols), np.float32)
    for q in order:
        g = q // group_size
        if g not in params:
            params[g] = mlx_affine_params(w[:, g * group_size : (g + 1) * group_size], bits)
        scale, bias = params[g]
        c, dq = _quant(w[:, q], scale, bias, bits)
        codes[:, q], deq[:, q] = c, dq
        err = (w[:, q] - dq) / hinv[q, q]
        w -= np.outer(err, hinv[q, :])
        hinv -= np.outer(hinv[:, q], hinv[q, :]) / hinv[q, q]
    return codes, deq


def gptq_depthwise_reference(w, hessians, group_size, bits, damp=0.01):
    """GPTQ of a (taps, channels) depthwise kernel grouped across channels, one Hessian per channel."""
    taps, channels = w.shape
    vs, hinvs = [], []
    for c in range(channels):
        wc, hc = _prepare(w[:, c][None, :], hessians[c], damp)
        vs.append(wc[0])
        hinvs.append(np.linalg.inv(hc))
    v = np.stack(vs)  # (channels, taps)
    codes = np.zeros((taps, channels), np.int64)
    deq = np.zeros((taps, channels), np.float32)
    for t in range(taps):
        scale, bias = mlx_affine_params(v[:, t].reshape(-1, group_size), bits)
        scale, bias = np.repeat(scale, group_size), np.repeat(bias, group_size)
        c, dq = _quant(v[:, t], scale, bias, bits)
        codes[t], deq[t] = c, dq
        for ch in range(channels):
            hinv = hinvs[ch]
            err = (v[ch, t] - dq[ch]) / hinv[t, t]
            v[ch] -= err * hinv[t, :]
            hinvs[ch] = hinv - np.outer(hinv[:, t], hinv[t, :]) / hinv[t, t]
    return codes, deq
