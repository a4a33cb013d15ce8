"""Multiply-accumulates per layer at a given input size, from shapes alone.

MLX is lazy: a forward pass that is never evaluated builds the graph (and so
every output shape) without computing anything. While it runs, the call of
each convolution and Linear type records its output shape. Modules whose class
defines ``matmul_macs(input_shape)`` (attention: the q·kᵀ and attention·v
products, which no Linear performs) record their input shape and add those MACs
under their own path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import mlx.core as mx
import mlx.nn as nn

from engine.image.models.layers import DepthwiseConv2d
from engine.image.quant.layers import QuantizedConv2d, QuantizedDepthwiseConv2d

COUNTED = (nn.Conv2d, nn.Linear, nn.QuantizedLinear, DepthwiseConv2d, QuantizedConv2d, QuantizedDepthwiseConv2d)


def _layer_macs(module: nn.Module, out_shape: tuple[int, ...]) -> int:
    out_elems = 1
    for s in out_shape:
        out_elems *= int(s)
    if isinstance(module, (DepthwiseConv2d, QuantizedDepthwiseConv2d)):
        kh, kw = module.weight.shape[1:3] if isinstance(module, DepthwiseConv2d) else module.kernel_size
        return out_elems * kh * kw
    if isinstance(module, QuantizedConv2d):
        kh, kw = module.kernel_size
        return out_elems * kh * kw * (module.in_channels // module.groups)
    if isinstance(module, nn.Conv2d):
        _, kh, kw, in_per_group = module.weight.shape
        return out_elems * kh * kw * in_per_group
    if isinstance(module, nn.QuantizedLinear):
        return out_elems * (module.weight.shape[1] * 32 // module.bits)
    return out_elems * module.weight.shape[1]  # nn.Linear


@contextlib.contextmanager
def _recording(shapes: dict[int, tuple], inputs: dict[int, tuple], matmul_classes=()) -> Iterator[None]:
    originals = {cls: cls.__dict__["__call__"] for cls in COUNTED if "__call__" in cls.__dict__}
    with_inputs = {cls: cls.__dict__["__call__"] for cls in matmul_classes if "__call__" in cls.__dict__}

    def wrap(original):
        def call(self, x, *args, **kwargs):
            y = original(self, x, *args, **kwargs)
            shapes[id(self)] = tuple(y.shape)
            return y

        return call

    def wrap_input(original):
        def call(self, x, *args, **kwargs):
            inputs[id(self)] = tuple(x.shape)
            return original(self, x, *args, **kwargs)

        return call

    try:
        for cls, original in originals.items():
            cls.__call__ = wrap(original)
        for cls, original in with_inputs.items():
            cls.__call__ = wrap_input(original)
        yield
    finally:
        for cls, original in {**originals, **with_inputs}.items():
            cls.__call__ = original


def count_macs(model: nn.Module, input_hwc: tuple[int, int, int]) -> dict[str, int]:
    """{layer path: MACs for one image of size ``input_hwc``}; layers not reached count 0.

    Returns an empty dict if the model cannot run at that size (the card then shows no MACs).
    """
    shapes: dict[int, tuple] = {}
    inputs: dict[int, tuple] = {}
    h, w, c = input_hwc
    matmul_classes = {type(m) for _, m in model.named_modules() if hasattr(type(m), "matmul_macs")}
    try:
        with _recording(shapes, inputs, matmul_classes):
            model(mx.zeros((1, h, w, c)))  # never evaluated: shapes only
    except (ValueError, TypeError, KeyError, IndexError):
        return {}
    macs = {
        name: _layer_macs(m, shapes[id(m)])
        for name, m in model.named_modules()
        if isinstance(m, COUNTED) and id(m) in shapes
    }
    for name, m in model.named_modules():
        if hasattr(type(m), "matmul_macs") and id(m) in inputs:
            macs[name] = macs.get(name, 0) + int(m.matmul_macs(inputs[id(m)]))
    return macs
