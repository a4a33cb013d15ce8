"""Quantized layers MLX lacks: convolutions whose weights are stored in low bits.

Policy, stated once:
- A regular (groups=1) k x k convolution flattens its kernel to
  (out, kh*kw*in) and runs as im2col + ``mx.quantized_matmul``; a 1x1
  convolution is a plain quantized matmul. The reduction axis is zero-padded to
  a multiple of the group size, so a 3-channel or 1-channel stem still
  quantizes.
- A depthwise convolution has only kh*kw weights per filter, too few for a
  group. Its kernel is quantized along the channel axis instead (each tap's
  weights across ``group_size`` channels share a scale), dequantized on the
  fly (it is tiny) and run as shifted taps.
- Other grouped convolutions are quantized like regular ones per output
  channel and dequantized into ``mx.conv2d(groups=...)``.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from engine.models.layers import DepthwiseConv2d, _pair, shifted_taps


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def _quantize(w: mx.array, group_size: int, bits: int, mode: str):
    """Quantize a 2D float32 array; returns (wq, scales, biases-or-None)."""
    wq, scales, *rest = mx.quantize(w.astype(mx.float32), group_size=group_size, bits=bits, mode=mode)
    return wq, scales, (rest[0] if rest else None)


class _QuantizedBase(nn.Module):
    def _set_quantized(self, w2d: mx.array, group_size: int, bits: int, mode: str) -> None:
        self.group_size, self.bits, self.mode = group_size, bits, mode
        self.weight, self.scales, biases = _quantize(w2d, group_size, bits, mode)
        if biases is not None:
            self.biases = biases

    def _dequantized_2d(self) -> mx.array:
        return mx.dequantize(
            self["weight"],
            self["scales"],
            self.get("biases"),
            group_size=self.group_size,
            bits=self.bits,
            mode=self.mode,
        )


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
        self.k_padded = _round_up(self.k, group_size)
        self._set_quantized(mx.zeros((out_channels, self.k_padded)), group_size, bits, mode)
        if bias:
            self.bias = mx.zeros((out_channels,))
        self.freeze()

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, group_size: int, bits: int, mode: str = "affine") -> QuantizedConv2d:
        out_ch, kh, kw, in_per_group = conv.weight.shape
        groups = getattr(conv, "groups", 1)
        q = cls(
            in_per_group * groups,
            out_ch,
            (kh, kw),
            conv.stride,
            conv.padding,
            conv.dilation,
            groups,
            bias="bias" in conv,
            group_size=group_size,
            bits=bits,
            mode=mode,
        )
        w = conv.weight.reshape(out_ch, -1)
        if q.k_padded != q.k:
            w = mx.pad(w, [(0, 0), (0, q.k_padded - q.k)])
        q._set_quantized(w, group_size, bits, mode)
        if "bias" in conv:
            q.bias = conv.bias
        q.freeze()
        return q

    def _extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, bits={self.bits}, group_size={self.group_size}, "
            f"mode={self.mode}"
        )

    def dequantized_weight(self) -> mx.array:
        """The kernel in MLX layout (out, kh, kw, in/groups), dequantized to float32."""
        kh, kw = self.kernel_size
        w = self._dequantized_2d()[:, : self.k]
        return w.reshape(self.out_channels, kh, kw, self.in_channels // self.groups)

    def _im2col(self, x: mx.array) -> mx.array:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph, pw = self.padding
        dh, dw = self.dilation
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
        return mx.concatenate(cols, axis=-1)  # (N, Ho, Wo, kh*kw*C) in the kernel's (kh, kw, C) order

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
            cols = self._im2col(x)
            n, ho, wo, k = cols.shape
            cols = cols.reshape(-1, k)
            if self.k_padded != k:
                cols = mx.pad(cols, [(0, 0), (0, self.k_padded - k)])
            y = mx.quantized_matmul(
                cols,
                self["weight"],
                scales=self["scales"],
                biases=self.get("biases"),
                transpose=True,
                group_size=self.group_size,
                bits=self.bits,
                mode=self.mode,
            ).reshape(n, ho, wo, self.out_channels)
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
        self.c_padded = _round_up(channels, group_size)
        self._set_quantized(mx.zeros((kh * kw, self.c_padded)), group_size, bits, mode)
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
    def from_module(cls, conv: nn.Module, group_size: int, bits: int, mode: str = "affine"):
        channels, kh, kw, _ = conv.weight.shape
        q = cls(channels, (kh, kw), conv.stride, conv.padding, "bias" in conv, group_size, bits, mode)
        taps = conv.weight[..., 0].reshape(channels, kh * kw).T  # (kh*kw, C)
        if q.c_padded != channels:
            taps = mx.pad(taps, [(0, 0), (0, q.c_padded - channels)])
        q._set_quantized(taps, group_size, bits, mode)
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
        taps = self._dequantized_2d()[:, : self.channels]  # (kh*kw, C)
        return taps.T.reshape(self.channels, kh, kw, 1)

    def __call__(self, x: mx.array) -> mx.array:
        y = shifted_taps(x, self.dequantized_weight().astype(x.dtype), self.stride, self.padding)
        if "bias" in self:
            y = y + self["bias"]
        return y


QUANTIZED_TYPES = (nn.QuantizedLinear, nn.QuantizedEmbedding, QuantizedConv2d, QuantizedDepthwiseConv2d)
