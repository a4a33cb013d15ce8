"""Number formats a layer can be stored in, and which ones this MLX supports."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import mlx.core as mx

from engine.core.errors import UserError

# Group sizes and bit widths each MLX quantization mode accepts.
MODE_RULES = {
    "affine": {"bits": (2, 3, 4, 5, 6, 8), "group_sizes": (32, 64, 128), "default": (64, 4)},
    "mxfp4": {"bits": (4,), "group_sizes": (32,), "default": (32, 4)},
    "mxfp8": {"bits": (8,), "group_sizes": (32,), "default": (32, 8)},
    "nvfp4": {"bits": (4,), "group_sizes": (16,), "default": (16, 4)},
}
FLOAT_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
FLOAT_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# Bytes per element of each stored float dtype (no MLX needed, so the GUI can size plans).
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


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

    def name(self) -> str:
        """The short format name ``parse_spec`` reads back: fp16, int4, int4-g32, mxfp4."""
        if self.quantized and self.mode == "affine":
            default_gs = MODE_RULES["affine"]["default"][0]
            return f"int{self.bits}" if self.group_size == default_gs else f"int{self.bits}-g{self.group_size}"
        return self.label()

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


_SPEC_RE = re.compile(r"^int([0-9]+)(?:[-/_]g([0-9]+))?$")


def parse_spec(text: str | dict, group_size: int | None = None) -> LayerSpec:
    """A LayerSpec from a format name or a spec dict.

    Args:
        text: fp32, fp16, bf16, int8 ... int2 (optionally ``int4-g32`` or the
            label form ``int4/g32``), mxfp4, mxfp8, nvfp4; or a dict as written
            by ``LayerSpec.to_dict``.
        group_size: the group size for ``intN`` names that do not carry one.

    Raises:
        UserError: unknown name, unsupported mode or impossible bits/group size.
    """
    if isinstance(text, dict):
        return LayerSpec.from_dict(text)
    key = str(text).strip().lower()
    if key in FLOAT_NAMES:
        return float_spec(FLOAT_NAMES[key])
    if key in FLOAT_DTYPES:
        return float_spec(key)
    m = _SPEC_RE.match(key)
    if m:
        gs = int(m.group(2)) if m.group(2) else group_size
        return quantized_spec("affine", int(m.group(1)), gs)
    if key in MODE_RULES and key != "affine":
        return quantized_spec(key, None, None)
    raise UserError(f"unknown format '{text}' (use one of {', '.join(format_names())})")


def format_names(available_only: bool = True) -> list[str]:
    """Every storage format name: floats, affine bit widths, then the fp modes this MLX supports."""
    ints = [f"int{b}" for b in sorted(MODE_RULES["affine"]["bits"], reverse=True)]
    modes = [m for m in MODE_RULES if m != "affine" and (not available_only or m in supported_modes())]
    return list(FLOAT_NAMES) + ints + modes


def scale_bytes(mode: str, scale_dtype: str = "float32") -> int:
    """Stored bytes per group: affine keeps a scale and a bias, the fp modes one 8-bit scale."""
    if mode == "affine":
        return 2 * DTYPE_BYTES[scale_dtype]
    return 1
