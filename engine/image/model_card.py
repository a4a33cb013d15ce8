"""A model card: per-layer storage, parameter counts, bits per weight."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from engine.image.bundle import ModelBundle
from engine.image.macs import count_macs
from engine.image.quant.apply import stored_nbytes
from engine.image.quant.formats import LayerSpec
from engine.image.quant.layers import QuantizedConv2d, QuantizedDepthwiseConv2d


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    shape: tuple[int, ...]
    format: str
    params: int
    bytes: int
    macs: int = 0  # multiply-accumulates for one image at the bundle's input size

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.bytes / self.params if self.params else 0.0


@dataclass(frozen=True)
class ModelCard:
    name: str
    arch: str
    recipe: str
    path: str | None
    content_hash: str
    labels: tuple[str, ...]
    input_shape: tuple[int, int, int]
    preprocessing: dict
    layers: tuple[LayerRow, ...]
    params: int
    bytes: int
    size_on_disk: int | None
    dtypes: tuple[str, ...]
    macs: int = 0  # per image at input_shape

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.bytes / self.params if self.params else 0.0


def _own_arrays(module: nn.Module) -> dict[str, mx.array]:
    return {k: v for k, v in module.items() if isinstance(v, mx.array)}


def _logical_weight(module: nn.Module) -> tuple[tuple[int, ...], int]:
    """(float shape, element count) of the weight a quantized layer stands for."""
    if isinstance(module, QuantizedConv2d):
        kh, kw = module.kernel_size
        shape = (module.out_channels, kh, kw, module.in_channels // module.groups)
    elif isinstance(module, QuantizedDepthwiseConv2d):
        kh, kw = module.kernel_size
        shape = (module.channels, kh, kw, 1)
    elif isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
        rows, packed = module.weight.shape
        shape = (rows, packed * 32 // module.bits)
    else:
        w = module.get("weight")
        shape = tuple(w.shape) if isinstance(w, mx.array) else ()
    count = 1
    for s in shape:
        count *= s
    return shape, count if shape else 0


def _layer_format(module: nn.Module, arrays: dict[str, mx.array]) -> str:
    if hasattr(module, "bits") and hasattr(module, "mode"):
        return LayerSpec(module.mode, module.bits, module.group_size).label()
    dtypes = sorted({str(v.dtype).replace("mlx.core.", "") for v in arrays.values()})
    return "/".join({"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(d, d) for d in dtypes)


def layer_rows(
    model: nn.Module, macs: dict[str, int] | None = None, quantization: dict | None = None
) -> tuple[list[LayerRow], set[str]]:
    """One row per module that owns arrays, in forward order, plus every dtype seen.

    Bytes are as stored on disk (``quantization`` may keep float32 scales as float16 there).
    """
    macs = macs or {}
    rows = []
    all_dtypes = set()
    # named_modules() lists children last-first; show layers in forward order.
    for name, module in reversed(model.named_modules()):
        arrays = _own_arrays(module)
        if not arrays:
            continue
        shape, weight_count = _logical_weight(module)
        quantized = hasattr(module, "bits") and hasattr(module, "mode")
        other = sum(v.size for k, v in arrays.items() if k not in ("weight", "scales", "biases")) if quantized else 0
        params = weight_count + other if quantized else sum(v.size for v in arrays.values())
        nbytes = sum(stored_nbytes(quantization, f"{name}.{k}", v) for k, v in arrays.items())
        all_dtypes.update(str(v.dtype).replace("mlx.core.", "") for v in arrays.values())
        row = LayerRow(
            name, type(module).__name__, shape, _layer_format(module, arrays), params, nbytes, macs.get(name, 0)
        )
        rows.append(row)
    return rows, all_dtypes


def model_card(bundle: ModelBundle) -> ModelCard:
    h, w = bundle.preprocessing.input_size
    macs = count_macs(bundle.model, (h, w, bundle.preprocessing.channels))
    rows, all_dtypes = layer_rows(bundle.model, macs, bundle.quantization)
    return ModelCard(
        name=bundle.name,
        arch=bundle.arch,
        recipe=bundle.recipe_name,
        path=str(bundle.path) if bundle.path else None,
        content_hash=bundle.content_hash(),
        labels=tuple(bundle.labels),
        input_shape=(h, w, bundle.preprocessing.channels),
        preprocessing=bundle.preprocessing.to_dict(),
        layers=tuple(rows),
        params=sum(r.params for r in rows),
        bytes=sum(r.bytes for r in rows),
        size_on_disk=bundle.size_on_disk(),
        dtypes=tuple(sorted(all_dtypes)),
        macs=sum(macs.values()),
    )
