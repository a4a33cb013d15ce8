"""Quantized layers against dequantize-then-float references."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine.models.layers import DepthwiseConv2d, shifted_taps
from engine.quant.layers import QuantizedConv2d, QuantizedDepthwiseConv2d


def _conv(in_ch, out_ch, k, stride, padding, groups=1, bias=True, seed=0):
    mx.random.seed(seed)
    conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=padding, groups=groups, bias=bias)
    if bias:
        conv.bias = mx.random.normal((out_ch,))
    mx.eval(conv.parameters())
    return conv


@pytest.mark.parametrize(
    "in_ch,out_ch,k,stride,padding,groups",
    [
        (1, 16, 3, 1, 1, 1),  # 1-channel stem: reduction 9 padded to the group size
        (3, 32, 3, 2, 1, 1),  # RGB stem, strided
        (16, 32, 1, 1, 0, 1),  # pointwise
        (32, 64, 3, 2, 1, 1),
        (64, 24, 1, 2, 0, 1),  # strided 1x1 (ResNet downsample)
        (8, 16, 7, 2, 3, 1),  # 7x7 stem
        (16, 32, 3, 1, 1, 4),  # grouped, not depthwise
    ],
)
@pytest.mark.parametrize("bits,group_size", [(8, 64), (4, 32), (4, 128), (2, 64)])
def test_quantized_conv_equals_dequantized_float_conv(in_ch, out_ch, k, stride, padding, groups, bits, group_size):
    conv = _conv(in_ch, out_ch, k, stride, padding, groups)
    q = QuantizedConv2d.from_conv2d(conv, group_size=group_size, bits=bits)
    x = mx.random.normal((2, 11, 13, in_ch))
    w = q.dequantized_weight()
    assert w.shape == conv.weight.shape
    ref = mx.conv2d(x, w, stride=conv.stride, padding=conv.padding, groups=groups) + conv.bias
    out = q(x)
    assert out.shape == conv(x).shape
    np.testing.assert_allclose(np.array(out), np.array(ref), rtol=1e-4, atol=1e-4)


def test_quantized_conv_stores_low_bit_weights():
    conv = _conv(64, 128, 3, 1, 1)
    q4 = QuantizedConv2d.from_conv2d(conv, group_size=64, bits=4)
    assert q4.weight.dtype == mx.uint32
    # 4 bits per weight: 8 weights per uint32 word.
    assert q4.weight.shape == (128, 64 * 9 // 8)
    float_bytes = conv.weight.nbytes
    q_bytes = q4.weight.nbytes + q4.scales.nbytes + q4.biases.nbytes
    assert q_bytes < 0.2 * float_bytes


@pytest.mark.parametrize("bits,expected_max_err", [(8, 0.02), (4, 0.35)])
def test_quantization_error_shrinks_with_bits(bits, expected_max_err):
    conv = _conv(32, 32, 3, 1, 1, bias=False)
    q = QuantizedConv2d.from_conv2d(conv, group_size=64, bits=bits)
    x = mx.random.normal((1, 8, 8, 32))
    rel = mx.abs(q(x) - conv(x)).max() / mx.abs(conv(x)).max()
    assert rel.item() < expected_max_err


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels,group_size", [(16, 32), (96, 64), (40, 32)])
def test_quantized_depthwise_equals_dequantized_reference(stride, channels, group_size):
    mx.random.seed(1)
    dw = DepthwiseConv2d(channels, 3, stride, 1, bias=True)
    dw.bias = mx.random.normal((channels,))
    mx.eval(dw.parameters())
    q = QuantizedDepthwiseConv2d.from_module(dw, group_size=group_size, bits=4)
    x = mx.random.normal((2, 9, 10, channels))
    w = q.dequantized_weight()
    ref = mx.conv2d(x, w, stride=stride, padding=1, groups=channels) + dw.bias
    np.testing.assert_allclose(np.array(q(x)), np.array(ref), rtol=1e-4, atol=1e-4)


def test_shifted_taps_equals_grouped_conv():
    mx.random.seed(2)
    x = mx.random.normal((2, 12, 12, 8))
    w = mx.random.normal((8, 3, 3, 1))
    for stride in (1, 2):
        ref = mx.conv2d(x, w, stride=stride, padding=1, groups=8)
        np.testing.assert_allclose(np.array(shifted_taps(x, w, stride, 1)), np.array(ref), rtol=1e-5, atol=1e-5)


def test_depthwise_conv2d_module_is_recognised_from_nn_conv2d():
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    assert QuantizedDepthwiseConv2d.is_depthwise(conv)
    assert not QuantizedDepthwiseConv2d.is_depthwise(nn.Conv2d(16, 16, 3, padding=1))
