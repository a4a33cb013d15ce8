"""Quantized layers MLX lacks: convolutions whose weights are stored in low bits.

Policy, stated once (the layouts themselves live in ``sizing.py``):
- A regular (groups=1) k x k convolution runs as im2col + ``mx.quantized_matmul``;
  a 1x1 convolution is a plain quantized matmul. Its kernel is quantized as the
  matrix (out, kh*kw*in) grouped along the reduction axis, zero-padded to a
  multiple of the group size, so a 3-channel or 1-channel stem still quantizes.
- A depthwise convolution has only kh*kw weights per filter, too few for a
  group. Its kernel is quantized along the channel axis instead (each tap's
  weights across ``group_size`` channels share a scale), dequantized on the
  fly (it is tiny) and run as shifted taps.
- Other grouped convolutions are quantized like regular ones and dequantized
  into ``mx.conv2d(groups=...)``.
- Affine scales and biases are computed in float32; with ``scale_dtype``
  float16 they are rounded to float16 values (stored as float16 on disk,
  computed with in float32), so a saved and reloaded model is bit-identical.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from engine.image.models.layers import DepthwiseConv2d, _pair, shifted_taps
from engine.image.quant.sizing import Layout, padded_dims


def round_scales(arr: mx.array | None, scale_dtype: str) -> mx.array | None:
    """Round float32 affine scales/biases to the values their storage dtype can hold."""
    if arr is None or scale_dtype == "float32" or arr.dtype != mx.float32:
        return arr
    return arr.astype(mx.float16 if scale_dtype == "float16" else mx.bfloat16).astype(mx.float32)


def quantize_matrix(m: mx.array, group_size: int, bits: int, mode: str, scale_dtype: str = "float32"):
    """Quantize a 2-D matrix along its last axis after zero padding; returns (wq, scales, biases-or-None)."""
    rows, cols = m.shape
    rows_p, cols_p = padded_dims(rows, cols, group_size, mode)
    m = m.astype(mx.float32)
    if (rows_p, cols_p) != (rows, cols):
        m = mx.pad(m, [(0, rows_p - rows), (0, cols_p - cols)])
    wq, scales, *rest = mx.quantize(m, group_size=group_size, bits=bits, mode=mode)
    biases = rest[0] if rest else None
    return wq, round_scales(scales, scale_dtype), round_scales(biases, scale_dtype)


def dequantize_matrix(wq, scales, biases, rows: int, cols: int, group_size: int, bits: int, mode: str) -> mx.array:
    m = mx.dequantize(wq, scales, biases, group_size=group_size, bits=bits, mode=mode)
    return m[:rows, :cols]


def fake_quantize(m: mx.array, group_size: int, bits: int, mode: str, scale_dtype: str = "float32") -> mx.array:
    """quantize -> dequantize of a 2-D matrix: the values a quantized layer computes with."""
    rows, cols = m.shape
    wq, scales, biases = quantize_matrix(m, group_size, bits, mode, scale_dtype)
    return dequantize_matrix(wq, scales, biases, rows, cols, group_size, bits, mode)


class _QuantizedBase(nn.Module):
    """Holds weight/scales[/biases] of one (rows, cols) matrix quantized along cols."""

    def _init_matrix(self, rows: int, cols: int, group_size: int, bits: int, mode: str) -> None:
        self.rows, self.cols = rows, cols
        self.group_size, self.bits, self.mode = group_size, bits, mode
        self._set_matrix(mx.zeros((rows, cols)))

    def _set_matrix(self, m: mx.array, scale_dtype: str = "float32") -> None:
        self.weight, self.scales, biases = quantize_matrix(m, self.group_size, self.bits, self.mode, scale_dtype)
        if biases is not None:
            self.biases = biases

    def _dequantized_2d(self) -> mx.array:
        return dequantize_matrix(
            self["weight"],
            self["scales"],
            self.get("biases"),
            self.rows,
            self.cols,
            self.group_size,
            self.bits,
            self.mode,
        )

    def _qmm(self, x: mx.array, transpose: bool) -> mx.array:
        return mx.quantized_matmul(
            x,
            self["weight"],
            scales=self["scales"],
            biases=self.get("biases"),
            transpose=transpose,
            group_size=self.group_size,
            bits=self.bits,
            mode=self.mode,
        )


def im2col(x: mx.array, kernel_size, stride, padding, dilation) -> mx.array:
    """(N, H, W, C) -> (N, Ho, Wo, kh*kw*C) patches in a kernel's (kh, kw, C) order."""
    kh, kw = kernel_size
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    if ph or pw:
        x = mx.pad(x, [(0, 0), (ph, ph), (pw, pw), (0, 0)])
    h, w = x.shape[1], x.shape[2]
    ho = (h - dh * (kh - 1) - 1) // sh + 1
    wo = (w - dw * (kw - 1) - 1) // sw + 1
    if kh == 1 and kw == 1:
        return x[:, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw, :]
    cols = [
        x[:, i * dh : i * dh + (ho - 1) * sh + 1 : sh, j * dw : j * dw + (wo - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return mx.concatenate(cols, axis=-1)


def conv_matrix(weight: mx.array) -> mx.array:
    """A conv kernel (out, kh, kw, in/groups) as the (out, kh*kw*in/groups) matrix quantized along its rows."""
    return weight.reshape(weight.shape[0], -1)


class QuantizedConv2d(_QuantizedBase):
    """A Conv2d whose kernel is stored quantized; see the module docstring."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        group_size: int = 64,
        bits: int = 4,
        mode: str = "affine",
    ):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.in_channels = in_channels
        self.out_channels = out_channels
        kh, kw = self.kernel_size
        self.k = kh * kw * (in_channels // groups)
        self._init_matrix(out_channels, self.k, group_size, bits, mode)
        if bias:
            self.bias = mx.zeros((out_channels,))
        self.freeze()

    @classmethod
    def from_conv2d(
        cls,
        conv: nn.Module,
        group_size: int,
        bits: int,
        mode: str = "affine",
        scale_dtype: str = "float32",
    ) -> QuantizedConv2d:
        out_ch, kh, kw, in_per_group = conv.weight.shape
        groups = getattr(conv, "groups", 1)
        q = cls(
            in_per_group * groups,
            out_ch,
            (kh, kw),
            conv.stride,
            conv.padding,
            getattr(conv, "dilation", 1),
            groups,
            bias="bias" in conv,
            group_size=group_size,
            bits=bits,
            mode=mode,
        )
        q._set_matrix(conv_matrix(conv.weight), scale_dtype)
        if "bias" in conv:
            q.bias = conv.bias
        q.freeze()
        return q

    @classmethod
    def from_layout(cls, conv: nn.Module, layout: Layout, scale_dtype: str = "float32") -> QuantizedConv2d:
        return cls.from_conv2d(conv, layout.group_size, layout.bits, layout.mode, scale_dtype)

    def _extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, bits={self.bits}, group_size={self.group_size}, "
            f"mode={self.mode}"
        )

    def dequantized_weight(self) -> mx.array:
        """The kernel in MLX layout (out, kh, kw, in/groups), dequantized to float32."""
        kh, kw = self.kernel_size
        return self._dequantized_2d().reshape(self.out_channels, kh, kw, self.in_channels // self.groups)

    def __call__(self, x: mx.array) -> mx.array:
        if self.groups != 1:
            y = mx.conv2d(
                x,
                self.dequantized_weight().astype(x.dtype),
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
        else:
            cols = im2col(x, self.kernel_size, self.stride, self.padding, self.dilation)
            n, ho, wo, k = cols.shape
            cols = cols.reshape(-1, k)
            _, k_padded = padded_dims(self.rows, self.cols, self.group_size, self.mode)
            if k_padded != k:
                cols = mx.pad(cols, [(0, 0), (0, k_padded - k)])
            y = self._qmm(cols, transpose=True)
            if y.shape[-1] != self.out_channels:
                y = y[:, : self.out_channels]
            y = y.reshape(n, ho, wo, self.out_channels)
        if "bias" in self:
            y = y + self["bias"]
        return y


class QuantizedDepthwiseConv2d(_QuantizedBase):
    """A depthwise conv whose taps are quantized across channels; see the module docstring."""

    def __init__(
        self,
        channels: int,
        kernel_size=3,
        stride=1,
        padding=0,
        bias: bool = False,
        group_size: int = 64,
        bits: int = 4,
        mode: str = "affine",
    ):
        super().__init__()
        self.channels = channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        kh, kw = self.kernel_size
        self._init_matrix(kh * kw, channels, group_size, bits, mode)
        if bias:
            self.bias = mx.zeros((channels,))
        self.freeze()

    @staticmethod
    def is_depthwise(module: nn.Module) -> bool:
        if isinstance(module, DepthwiseConv2d):
            return True
        if isinstance(module, nn.Conv2d):
            out_ch, _, _, in_per_group = module.weight.shape
            return module.groups == out_ch and in_per_group == 1 and _pair(module.dilation) == (1, 1)
        return False

    @classmethod
    def from_module(
        cls, conv: nn.Module, group_size: int, bits: int, mode: str = "affine", scale_dtype: str = "float32"
    ) -> QuantizedDepthwiseConv2d:
        channels, kh, kw, _ = conv.weight.shape
        q = cls(channels, (kh, kw), conv.stride, conv.padding, "bias" in conv, group_size, bits, mode)
        q._set_matrix(depthwise_matrix(conv.weight), scale_dtype)
        if "bias" in conv:
            q.bias = conv.bias
        q.freeze()
        return q

    def _extra_repr(self) -> str:
        return (
            f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"bits={self.bits}, group_size={self.group_size}, mode={self.mode}"
        )

    def dequantized_weight(self) -> mx.array:
        """The kernel in (C, kh, kw, 1) layout, dequantized to float32."""
        kh, kw = self.kernel_size
        return self._dequantized_2d().T.reshape(self.channels, kh, kw, 1)

    def __call__(self, x: mx.array) -> mx.array:
        y = shifted_taps(x, self.dequantized_weight().astype(x.dtype), self.stride, self.padding)
        if "bias" in self:
            y = y + self["bias"]
        return y


def depthwise_matrix(weight: mx.array) -> mx.array:
    """A depthwise kernel (C, kh, kw, 1) as the (kh*kw, C) matrix quantized across channels."""
    c, kh, kw, _ = weight.shape
    return weight[..., 0].reshape(c, kh * kw).T


QUANTIZED_TYPES = (nn.QuantizedLinear, nn.QuantizedEmbedding, QuantizedConv2d, QuantizedDepthwiseConv2d)
