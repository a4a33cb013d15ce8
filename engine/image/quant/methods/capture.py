"""What a layer sees on the calibration images: its input patches' second moment and mean.

A layer's output is linear in its input patches (the rows of im2col for a convolution,
the feature vectors for a Linear), so everything the methods need is

- ``hessian``: ``sum p p^T`` over all patches (cols x cols), or, for a depthwise
  convolution, one (taps x taps) sum per channel;
- ``mean``: the mean patch, from which the mean output of any weights follows.

The model runs batch by batch and stops right after the layer (the later layers are
not needed), so collecting a layer's statistics costs a partial forward pass of the
calibration set. Memory: one batch of patches plus the float64 sums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import Cancelled
from engine.image.models.layers import _pair
from engine.image.quant.hooks import hooked
from engine.image.quant.layers import im2col


@dataclass(frozen=True)
class LayerStats:
    """Input statistics of one layer over the calibration set."""

    hessian: np.ndarray  # (k, k), or (channels, taps, taps) for a depthwise conv; sums, float64
    mean: np.ndarray  # (k,), or (taps, channels) for a depthwise conv
    count: int  # patches summed


class _Reached(Exception):
    """Raised inside the forward pass once the layer's input has been seen."""


def patches(module: nn.Module, kind: str, x: mx.array) -> mx.array:
    """The layer's input as rows of its weight matrix's reduction axis: (M, k), or (M, taps, channels) for depthwise."""
    x = x.astype(mx.float32)
    if kind == "linear":
        return x.reshape(-1, x.shape[-1])
    out_ch, kh, kw, in_pg = module.weight.shape
    dilation = _pair(getattr(module, "dilation", 1))
    cols = im2col(x, (kh, kw), _pair(module.stride), _pair(module.padding), dilation)
    if kind == "depthwise":
        return cols.reshape(-1, kh * kw, x.shape[-1])
    return cols.reshape(-1, kh * kw * in_pg)


def layer_stats(
    model: nn.Module,
    path: str,
    kind: str,
    calib_x: np.ndarray,
    batch_size: int = 32,
    should_stop: Callable[[], bool] | None = None,
) -> LayerStats:
    """Statistics of the input of ``model``'s layer at ``path`` (in its current, possibly partly quantized state).

    Raises:
        Cancelled: should_stop() turned true.
    """
    module = dict(model.named_modules())[path]
    acc: dict[str, np.ndarray | int] = {"h": 0.0, "s": 0.0, "n": 0}

    def hook(_path, forward, x, *args, **kwargs):
        p = patches(module, kind, x)
        if kind == "depthwise":
            pt = p.transpose(2, 1, 0)  # (channels, taps, M): one batched matmul
            h = pt @ pt.transpose(0, 2, 1)
        else:
            h = p.T @ p
        s = p.sum(axis=0)
        mx.eval(h, s)
        acc["h"] = acc["h"] + np.array(h, dtype=np.float64)
        acc["s"] = acc["s"] + np.array(s, dtype=np.float64)
        acc["n"] = acc["n"] + p.shape[0]
        raise _Reached()

    with hooked(model, {path: hook}):
        for start in range(0, calib_x.shape[0], batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled()
            try:
                mx.eval(model(mx.array(calib_x[start : start + batch_size])))
            except _Reached:
                pass
    n = int(acc["n"])
    return LayerStats(np.asarray(acc["h"]), np.asarray(acc["s"]) / max(n, 1), n)


def output_means(
    model: nn.Module,
    paths: list[str],
    calib_x: np.ndarray,
    batch_size: int = 32,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Mean output per channel (last axis) of each layer at ``paths`` over the calibration set, in one pass.

    Raises:
        Cancelled: should_stop() turned true.
    """
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}

    def hook(path, forward, x, *args, **kwargs):
        y = forward(x, *args, **kwargs)
        flat = y.astype(mx.float32).reshape(-1, y.shape[-1])
        s = flat.sum(axis=0)
        mx.eval(s)
        sums[path] = sums.get(path, 0.0) + np.array(s, dtype=np.float64)
        counts[path] = counts.get(path, 0) + flat.shape[0]
        return y

    with hooked(model, dict.fromkeys(paths, hook)):
        for start in range(0, calib_x.shape[0], batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled()
            mx.eval(model(mx.array(calib_x[start : start + batch_size])))
    return {p: sums[p] / counts[p] for p in sums}
