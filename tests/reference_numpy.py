"""An independent NumPy forward pass of the default small CNN, for parity tests."""

from __future__ import annotations

import numpy as np


def conv2d_nhwc(x: np.ndarray, w: np.ndarray, stride: int, padding: int, groups: int = 1) -> np.ndarray:
    """x (N,H,W,C), w (O,kh,kw,C/groups) in MLX layout; plain loops over kernel taps."""
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, ho, wo, o), dtype=np.float64)
    og = o // groups
    for g in range(groups):
        xs = xp[..., g * cg : (g + 1) * cg]
        ws = w[g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :]
                out[..., g * og : (g + 1) * og] += patch @ ws[:, i, j, :].T
    return out


def batchnorm(x, p, prefix, eps=1e-5):
    mean, var = p[f"{prefix}.running_mean"], p[f"{prefix}.running_var"]
    return (x - mean) / np.sqrt(var + eps) * p[f"{prefix}.weight"] + p[f"{prefix}.bias"]


def small_cnn_forward(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits of engine.image.models.small_cnn.SmallCNN from its weights, in float64."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    h = np.asarray(x, dtype=np.float64)
    blocks = [("stem", 1, 1), ("dw", 2, None), ("pw", 1, 1), ("conv3", 2, 1), ("conv4", 2, 1)]
    for name, stride, groups in blocks:
        w = p[f"{name}.conv.weight"]
        k = w.shape[1]
        groups = w.shape[0] if groups is None else groups
        h = conv2d_nhwc(h, w, stride, k // 2, groups)
        h = np.maximum(batchnorm(h, p, f"{name}.bn"), 0.0)
    pooled = h.mean(axis=(1, 2))
    return pooled @ p["head.weight"].T + p["head.bias"]
