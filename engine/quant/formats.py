"""Number formats a layer can be stored in, and which ones this MLX supports."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import mlx.core as mx

from engine.errors import UserError

# Group sizes and bit widths each MLX quantization mode accepts.
MODE_RULES = {
    "affine": {"bits": (2, 3, 4, 5, 6, 8), "group_sizes": (32, 64, 128), "default": (64, 4)},
    "mxfp4": {"bits": (4,), "group_sizes": (32,), "default": (32, 4)},
    "mxfp8": {"bits": (8,), "group_sizes": (32,), "default": (32, 8)},
    "nvfp4": {"bits": (4,), "group_sizes": (16,), "default": (16, 4)},
}
FLOAT_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


@cache
def supported_modes() -> tuple[str, ...]:
    """The quantization modes the installed MLX accepts, probed at run time."""
    found = []
    for mode, rule in MODE_RULES.items():
        gs, bits = rule["default"]
        try:
            w = mx.zeros((8, 128), dtype=mx.float32)
            mx.eval(mx.quantize(w, group_size=gs, bits=bits, mode=mode))
            found.append(mode)
        except (ValueError, RuntimeError, TypeError):
            continue
    return tuple(found)


@dataclass(frozen=True)
class LayerSpec:
    """How one layer's weight is stored.

    ``mode is None`` means a float layer stored in ``dtype``; otherwise the
    weight is quantized with ``mode``/``bits``/``group_size``.
    """

    mode: str | None = None
    bits: int = 32
    group_size: int = 0
    dtype: str = "float32"

    @property
    def quantized(self) -> bool:
        return self.mode is not None

    def label(self) -> str:
        if not self.quantized:
            return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[self.dtype]
        if self.mode == "affine":
            return f"int{self.bits}/g{self.group_size}"
        return self.mode

    def to_dict(self) -> dict:
        if self.quantized:
            return {"mode": self.mode, "bits": self.bits, "group_size": self.group_size}
        return {"dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> LayerSpec:
        if d.get("mode"):
            return quantized_spec(d["mode"], d.get("bits"), d.get("group_size"))
        return float_spec(d.get("dtype", "float32"))


def float_spec(dtype: str) -> LayerSpec:
    if dtype not in FLOAT_DTYPES:
        raise UserError(f"unknown float dtype '{dtype}' (use one of {', '.join(FLOAT_DTYPES)})")
    return LayerSpec(mode=None, bits=FLOAT_DTYPES[dtype].size * 8, dtype=dtype)


def quantized_spec(mode: str, bits: int | None = None, group_size: int | None = None) -> LayerSpec:
    """A validated quantized LayerSpec; raises UserError for impossible settings."""
    if mode not in MODE_RULES:
        raise UserError(f"unknown quantization mode '{mode}' (use one of {', '.join(MODE_RULES)})")
    if mode not in supported_modes():
        raise UserError(f"quantization mode '{mode}' is not supported by the installed MLX {mx.__version__}")
    rule = MODE_RULES[mode]
    default_gs, default_bits = rule["default"]
    bits = default_bits if bits is None else int(bits)
    group_size = default_gs if group_size is None else int(group_size)
    if bits not in rule["bits"]:
        raise UserError(f"{mode} quantization takes bits in {rule['bits']}, not {bits}")
    if group_size not in rule["group_sizes"]:
        raise UserError(f"{mode} quantization takes group sizes {rule['group_sizes']}, not {group_size}")
    return LayerSpec(mode=mode, bits=bits, group_size=group_size, dtype="float32")
