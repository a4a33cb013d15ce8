"""Fold inference-mode BatchNorm into the convolution (or Linear) before it.

``bn(conv(x)) = conv'(x)`` with ``W' = W * s`` and ``b' = (b - mean) * s + beta``,
``s = gamma / sqrt(var + eps)`` per output channel: exact in real arithmetic,
and checked in float32 on a seeded input before it is kept (a model whose
conv output also feeds something else than the BatchNorm would fail the check
and is left unfolded). TFLite and Core ML converters do the same. It removes
four float32 vectors per channel from the file, which matters for
MobileNet-sized models at 8 and 4 bits.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.image.quant.hooks import example_input, replace_modules, trace_calls
from engine.image.quant.layers import QuantizedDepthwiseConv2d

FOLD_RTOL = 1e-4
CHECK_SIZE = 32  # the fold check's input side: exactness does not depend on the size, its cost does


class FoldedBatchNorm(nn.Module):
    """Stands where a BatchNorm was after it was folded into ``into``; passes its input through."""

    def __init__(self, into: str = ""):
        super().__init__()
        self.into = into

    def _extra_repr(self) -> str:
        return f"folded into {self.into}"

    def __call__(self, x: mx.array) -> mx.array:
        return x


def _foldable_producer(module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv2d, nn.Linear)) or QuantizedDepthwiseConv2d.is_depthwise(module)


def _foldable_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.BatchNorm) and "running_mean" in module and "running_var" in module


def find_conv_bn_pairs(model: nn.Module, input_shape: tuple[int, int, int]) -> list[tuple[str, str]]:
    """(conv path, bn path) pairs where the BatchNorm's input is exactly the conv's output."""
    modules = dict(model.named_modules())
    calls = trace_calls(model, example_input(input_shape, batch=1), evaluate=False)  # identities only
    pairs, used = [], set()
    for i, call in enumerate(calls):
        if not _foldable_bn(modules[call.path]):
            continue
        for prev in reversed(calls[:i]):
            if prev.output is call.input and _foldable_producer(modules[prev.path]):
                if (
                    prev.path not in used
                    and modules[prev.path].weight.shape[0] == modules[call.path].running_mean.shape[0]
                ):
                    pairs.append((prev.path, call.path))
                    used.add(prev.path)
                break
    return pairs


def _fold_pair(conv: nn.Module, bn: nn.BatchNorm) -> None:
    s = mx.rsqrt(bn.running_var + bn.eps)
    gamma = bn["weight"] if "weight" in bn else mx.ones_like(s)
    beta = bn["bias"] if "bias" in bn else mx.zeros_like(s)
    s = s * gamma
    w = conv.weight
    conv.weight = (w * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    b = conv["bias"] if "bias" in conv else mx.zeros((w.shape[0],), dtype=w.dtype)
    conv.bias = ((b - bn.running_mean) * s + beta).astype(w.dtype)


def install_folds(model: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """The structure of a folded model: each BatchNorm becomes a FoldedBatchNorm and its conv gains a bias."""
    modules = dict(model.named_modules())
    updates = {}
    for conv_path, bn_path in pairs:
        conv = modules[conv_path]
        if "bias" not in conv:
            conv.bias = mx.zeros((conv.weight.shape[0],), dtype=conv.weight.dtype)
        updates[bn_path] = FoldedBatchNorm(conv_path)
    replace_modules(model, updates)


def fold_batchnorm(model: nn.Module, input_shape: tuple[int, int, int]) -> list[tuple[str, str]]:
    """Fold every Conv -> BatchNorm pair of an eval-mode float model, in place.

    Returns:
        The folded (conv path, bn path) pairs; empty when there are none or when
        the folded model does not reproduce the float outputs (it is then left
        untouched).
    """
    pairs = find_conv_bn_pairs(model, input_shape)
    if not pairs:
        return []
    modules = dict(model.named_modules())
    x, ref = _check_run(model, input_shape)
    saved = {c: {k: modules[c][k] for k in ("weight", "bias") if k in modules[c]} for c, _ in pairs}
    bns = {b: modules[b] for _, b in pairs}
    for conv_path, bn_path in pairs:
        _fold_pair(modules[conv_path], modules[bn_path])
    install_folds(model, pairs)
    out = model(x)
    mx.eval(out)
    ref_np, out_np = np.array(ref, dtype=np.float64), np.array(out, dtype=np.float64)
    if not np.allclose(out_np, ref_np, rtol=FOLD_RTOL, atol=FOLD_RTOL * max(1.0, float(np.abs(ref_np).max()))):
        _undo(model, pairs, saved, bns)
        return []
    return pairs


def _check_run(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[mx.array, mx.array]:
    """A seeded one-image input and the model's output: at CHECK_SIZE pixels when the model runs there
    (a ResNet-50 at 32 px costs 2 % of a 224-px forward), else at its own size."""
    h, w, c = input_shape
    small = (min(h, CHECK_SIZE), min(w, CHECK_SIZE), c)
    for shape in dict.fromkeys([small, input_shape]):
        x = example_input(shape, batch=1)
        try:
            ref = model(x)
            mx.eval(ref)
            return x, ref
        except (ValueError, TypeError, IndexError, KeyError, RuntimeError):
            if shape == input_shape:
                raise
    raise AssertionError("unreachable")


def _undo(model, pairs, saved, bns) -> None:
    modules = dict(model.named_modules())
    for conv_path, _ in pairs:
        conv = modules[conv_path]
        if "bias" not in saved[conv_path]:
            conv.pop("bias", None)
        conv.update(saved[conv_path])
    replace_modules(model, bns)


def folded_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The (conv path, bn path) pairs already folded in ``model``."""
    return [(m.into, p) for p, m in reversed(model.named_modules()) if isinstance(m, FoldedBatchNorm)]
