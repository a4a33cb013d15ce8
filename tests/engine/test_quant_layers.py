"""Quantized layers against dequantize-then-float references, for every mode and layout."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine.image.models.layers import DepthwiseConv2d, shifted_taps
from engine.image.quant.apply import layer_kind, quantize_layer
from engine.image.quant.formats import parse_spec, supported_modes
from engine.image.quant.layers import QuantizedConv2d, QuantizedDepthwiseConv2d, quantize_matrix
from engine.image.quant.sizing import choose_layout

MODES = [("affine", 8, 64), ("affine", 4, 32), ("affine", 4, 128), ("affine", 2, 64), ("affine", 3, 32)]
MODES += [(m, b, g) for m, b, g in (("mxfp4", 4, 32), ("mxfp8", 8, 32), ("nvfp4", 4, 16)) if m in supported_modes()]


def _conv(in_ch, out_ch, k, stride, padding, groups=1, bias=True, seed=0):
    mx.random.seed(seed)
    conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=padding, groups=groups, bias=bias)
    if bias:
        conv.bias = mx.random.normal((out_ch,))
    mx.eval(conv.parameters())
    return conv


CONVS = [
    (1, 16, 3, 1, 1, 1),  # 1-channel stem: reduction 9 padded to the group size
    (3, 32, 3, 2, 1, 1),  # RGB stem, strided
    (16, 32, 1, 1, 0, 1),  # pointwise
    (32, 64, 3, 2, 1, 1),
    (64, 24, 1, 2, 0, 1),  # strided 1x1 (ResNet downsample)
    (8, 16, 7, 2, 3, 1),  # 7x7 stem
    (16, 32, 3, 1, 1, 4),  # grouped, not depthwise
    (5, 7, 3, 1, 1, 1),  # odd sizes everywhere (nvfp4's even-group rule)
]


@pytest.mark.parametrize("in_ch,out_ch,k,stride,padding,groups", CONVS)
@pytest.mark.parametrize("mode,bits,group_size", MODES)
def test_quantized_conv_equals_dequantized_float_conv(
    in_ch, out_ch, k, stride, padding, groups, mode, bits, group_size
):
    conv = _conv(in_ch, out_ch, k, stride, padding, groups)
    q = QuantizedConv2d.from_conv2d(conv, group_size=group_size, bits=bits, mode=mode)
    x = mx.random.normal((2, 11, 13, in_ch))
    w = q.dequantized_weight()
    assert w.shape == conv.weight.shape
    ref = mx.conv2d(x, w, stride=conv.stride, padding=conv.padding, groups=groups) + conv.bias
    out = q(x)
    assert out.shape == conv(x).shape
    np.testing.assert_allclose(np.array(out), np.array(ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode,bits,group_size", MODES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels", [16, 96, 40])
def test_quantized_depthwise_equals_dequantized_reference(mode, bits, group_size, stride, channels):
    mx.random.seed(1)
    dw = DepthwiseConv2d(channels, 3, stride, 1, bias=True)
    dw.bias = mx.random.normal((channels,))
    mx.eval(dw.parameters())
    q = QuantizedDepthwiseConv2d.from_module(dw, group_size=group_size, bits=bits, mode=mode)
    x = mx.random.normal((2, 9, 10, channels))
    w = q.dequantized_weight()
    ref = mx.conv2d(x, w, stride=stride, padding=1, groups=channels) + dw.bias
    np.testing.assert_allclose(np.array(q(x)), np.array(ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode,bits,group_size", MODES)
def test_quantized_linear_equals_dequantized_reference(mode, bits, group_size):
    mx.random.seed(4)
    lin = nn.Linear(128, 10)
    mx.eval(lin.parameters())
    q, entry = quantize_layer(lin, "linear", parse_spec({"mode": mode, "bits": bits, "group_size": group_size}))
    assert isinstance(q, nn.QuantizedLinear) and entry["bits"] == bits
    w = mx.dequantize(q.weight, q.scales, q.get("biases"), group_size=q.group_size, bits=q.bits, mode=q.mode)
    x = mx.random.normal((3, 128))
    np.testing.assert_allclose(np.array(q(x)), np.array(x @ w.T + lin.bias), rtol=1e-4, atol=1e-4)


def _unpack(wq: np.ndarray, bits: int) -> np.ndarray:
    """Unpack MLX's uint32 words (little-endian fields) for 2, 4 and 8 bits, independently of MLX."""
    per = 32 // bits
    shifts = np.arange(per, dtype=np.uint32) * bits
    vals = (wq[..., None] >> shifts) & np.uint32((1 << bits) - 1)
    return vals.reshape(wq.shape[0], -1).astype(np.float64)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_affine_codes_rebuild_the_weight_within_one_step(bits, group_size):
    """q * scale + bias from the packed codes (numpy) equals MLX's dequantize and the weight to one step.

    (MLX moves the scale so the group's larger-magnitude end is exact, so the far end may be off by up
    to one step rather than half.)"""
    rng = np.random.default_rng(bits + group_size)
    w = rng.standard_normal((6, 200)).astype(np.float32)
    wq, scales, biases = quantize_matrix(mx.array(w), group_size, bits, "affine")
    q = _unpack(np.array(wq), bits)
    s = np.repeat(np.array(scales, dtype=np.float64), group_size, axis=1)
    b = np.repeat(np.array(biases, dtype=np.float64), group_size, axis=1)
    rebuilt = (q * s + b)[:, :200]
    deq = np.array(mx.dequantize(wq, scales, biases, group_size=group_size, bits=bits))[:, :200]
    np.testing.assert_allclose(rebuilt, deq, rtol=1e-6, atol=1e-6)
    assert np.all(np.abs(rebuilt - w) <= np.abs(s[:, :200]) + 1e-5)
    assert q.max() <= 2**bits - 1


def test_layout_choice_takes_a_smaller_group_only_when_it_stores_less():
    spec = parse_spec("int4")
    assert choose_layout("conv", (32, 3, 3, 3), spec).group_size == 32  # reduction 27: pad to 32, not 64
    assert choose_layout("conv", (96, 1, 1, 16), spec).group_size == 32
    assert choose_layout("conv", (64, 3, 3, 32), spec).group_size == 64  # 288 -> 320 either way; fewer scales
    assert choose_layout("depthwise", (144, 3, 3, 1), spec, "float16").group_size == 32  # 160 columns, not 192
    assert choose_layout("conv", (32, 3, 3, 3), spec, adapt=False).group_size == 64
    assert choose_layout("linear", (10, 96), spec).group_size == 32  # 96 is no multiple of 64


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
    assert layer_kind(conv) == "depthwise"
    assert not QuantizedDepthwiseConv2d.is_depthwise(nn.Conv2d(16, 16, 3, padding=1))
