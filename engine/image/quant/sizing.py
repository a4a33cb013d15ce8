"""How a layer's weight is laid out for quantization, and how many bytes it takes.

Plain arithmetic, no MLX arrays, so the GUI can size a recipe as the user
edits it and the budget search can price every choice without quantizing.
The quantized layers use the same functions, so the sizes are exact (a test
compares them with the arrays).

A weight is quantized as a 2-D matrix (rows, cols) in groups along cols:

- Linear: (out, in); MLX's QuantizedLinear needs ``in`` divisible by the group.
- Conv2d (regular or grouped): (out, kh*kw*in/groups), grouped along the
  reduction axis, zero-padded to a multiple of the group size. (Grouping the
  transpose along the output channels would pad less for short reductions,
  but one scale shared by output channels of different magnitude cost 27
  points of int3 accuracy on the default model once BatchNorm was folded.)
- Depthwise: (kh*kw, channels) grouped across channels (kh*kw is too short).

With ``adapt`` (the default) a layer may also use a smaller allowed group
size than asked when that stores fewer bytes (less padding); a smaller group
is never less accurate, so this only ever trades in the user's favour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.image.quant.formats import DTYPE_BYTES, MODE_RULES, LayerSpec, scale_bytes

KINDS = ("conv", "depthwise", "linear")


@dataclass(frozen=True)
class Layout:
    """How one weight matrix is quantized: its logical shape and the group it uses."""

    rows: int
    cols: int
    group_size: int
    bits: int
    mode: str

    @property
    def padded(self) -> tuple[int, int]:
        return padded_dims(self.rows, self.cols, self.group_size, self.mode)

    def nbytes(self, scale_dtype: str = "float32") -> int:
        return matrix_bytes(self.rows, self.cols, self.group_size, self.bits, self.mode, scale_dtype)


def padded_dims(rows: int, cols: int, group_size: int, mode: str) -> tuple[int, int]:
    """(rows, cols) after zero padding.

    cols rounds up to the group size. MLX 0.32's nvfp4 kernels also need an
    even number of groups, so an odd count gets one more (zero) row.
    """
    cols_p = int(math.ceil(cols / group_size) * group_size)
    rows_p = rows
    if mode == "nvfp4" and (rows * cols_p // group_size) % 2:
        rows_p += 1
    return rows_p, cols_p


def matrix_bytes(rows: int, cols: int, group_size: int, bits: int, mode: str, scale_dtype: str = "float32") -> int:
    rows_p, cols_p = padded_dims(rows, cols, group_size, mode)
    packed = rows_p * (cols_p * bits // 32) * 4  # uint32 words
    return packed + rows_p * (cols_p // group_size) * scale_bytes(mode, scale_dtype)


def weight_numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 0


def matrix_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """The (rows, cols) matrix a weight of MLX layout ``shape`` is quantized as."""
    if kind == "depthwise":
        c, kh, kw, _ = shape
        return kh * kw, c
    return shape[0], weight_numel(shape[1:])


def candidate_layouts(kind: str, shape: tuple[int, ...], spec: LayerSpec, adapt: bool = True) -> list[Layout]:
    """Every layout the quantizer may use for this layer and spec, in order of preference."""
    allowed = MODE_RULES[spec.mode]["group_sizes"]
    if adapt:
        sizes = sorted((g for g in allowed if g <= spec.group_size), reverse=True) or [spec.group_size]
    else:
        sizes = [spec.group_size]
    rows, cols = matrix_shape(kind, shape)
    out = [Layout(rows, cols, gs, spec.bits, spec.mode) for gs in sizes]
    if kind == "linear":
        # MLX's QuantizedLinear takes no padding: the group must divide the input width
        # (else the largest allowed group that does, else none).
        out_ch, inp = shape

        def unpadded(groups):
            lays = [Layout(out_ch, inp, g, spec.bits, spec.mode) for g in groups if inp % g == 0]
            return [lay for lay in lays if lay.padded == (lay.rows, lay.cols)]

        out = unpadded(sizes) or unpadded(sorted(allowed, reverse=True))[:1]
    return out


def choose_layout(
    kind: str, shape: tuple[int, ...], spec: LayerSpec, scale_dtype: str = "float32", adapt: bool = True
) -> Layout | None:
    """The layout that stores the fewest bytes (ties keep the earlier, preferred one).

    Returns None when the layer cannot be quantized with ``spec`` (a Linear whose
    width no allowed group divides); such a layer stays in float16.
    """
    best = None
    for lay in candidate_layouts(kind, shape, spec, adapt):
        if best is None or lay.nbytes(scale_dtype) < best.nbytes(scale_dtype):
            best = lay
    return best


FALLBACK_FLOAT = "float16"


def layer_bytes(
    kind: str,
    shape: tuple[int, ...],
    spec: LayerSpec,
    has_bias: bool,
    scale_dtype: str = "float32",
    adapt: bool = True,
) -> int:
    """Stored bytes of one layer's weight (and bias) under ``spec``.

    A quantized layer keeps its bias in float32; a float layer stores weight
    and bias in its dtype.
    """
    out = shape[0]
    if spec.quantized:
        lay = choose_layout(kind, shape, spec, scale_dtype, adapt)
        if lay is not None:
            return lay.nbytes(scale_dtype) + (4 * out if has_bias else 0)
        dtype = FALLBACK_FLOAT
    else:
        dtype = spec.dtype
    return DTYPE_BYTES[dtype] * (weight_numel(shape) + (out if has_bias else 0))
