"""Apply a recipe to a float model, and rebuild a quantized model from its config.

The config ``quantize_model`` returns (stored in the bundle's config.json) is
the whole truth about the stored model: every quantizable layer's format,
and group size, the BatchNorms folded into convolutions, the
dtype the affine scales are stored in. ``apply_quant_config`` rebuilds the
same structure from it alone, so a bundle reloads exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from engine.core.errors import Cancelled
from engine.image.quant.fold import fold_batchnorm, folded_pairs, install_folds
from engine.image.quant.formats import FLOAT_DTYPES, LayerSpec, float_spec
from engine.image.quant.half import HALF_DTYPES, WideBatchNorm, widen_batchnorms
from engine.image.quant.hooks import example_input, replace_modules, trace_calls
from engine.image.quant.layers import QUANTIZED_TYPES, QuantizedConv2d, QuantizedDepthwiseConv2d, round_scales
from engine.image.quant.recipes import Recipe
from engine.image.quant.sizing import FALLBACK_FLOAT, Layout, choose_layout


def layer_kind(module: nn.Module) -> str | None:
    """'linear', 'conv', 'depthwise', or None for modules that hold no quantizable weight."""
    if isinstance(module, QUANTIZED_TYPES):
        return None
    if QuantizedDepthwiseConv2d.is_depthwise(module):
        return "depthwise"
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


@dataclass(frozen=True)
class LayerInfo:
    """A quantizable layer of a float model: what a recipe is resolved against."""

    path: str
    kind: str
    shape: tuple[int, ...]  # the weight's MLX layout
    has_bias: bool

    @property
    def params(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n + (self.shape[0] if self.has_bias else 0)


def quantizable_layers(model: nn.Module, input_shape: tuple[int, int, int] | None = None) -> list[LayerInfo]:
    """The model's quantizable layers, in execution order when ``input_shape`` (H, W, C) is given.

    Without an input shape the order is the definition order, which matches the
    execution order for the sequential models here.
    """
    found = [(p, m, layer_kind(m)) for p, m in reversed(model.named_modules()) if p]
    found = [(p, m, k) for p, m, k in found if k is not None]
    if input_shape is not None and found:
        order = {}
        lazy = trace_calls(model, example_input(input_shape, batch=1), [p for p, _, _ in found], evaluate=False)
        for call in lazy:
            order.setdefault(call.path, len(order))
        found.sort(key=lambda t: order.get(t[0], len(order)))
    return [LayerInfo(p, k, tuple(m.weight.shape), "bias" in m) for p, m, k in found]


def _quantize_layer(module: nn.Module, kind: str, layout: Layout, scale_dtype: str) -> nn.Module:
    if kind == "linear":
        q = nn.QuantizedLinear.from_linear(module, group_size=layout.group_size, bits=layout.bits, mode=layout.mode)
        q.scales = round_scales(q.scales, scale_dtype)
        if "biases" in q:
            q.biases = round_scales(q.biases, scale_dtype)
        return q
    if kind == "depthwise":
        return QuantizedDepthwiseConv2d.from_module(module, layout.group_size, layout.bits, layout.mode, scale_dtype)
    return QuantizedConv2d.from_layout(module, layout, scale_dtype)


def quantize_layer(module: nn.Module, kind: str, spec: LayerSpec, scale_dtype: str = "float16", adapt: bool = True):
    """Quantize one float layer.

    Returns:
        (replacement module, config entry); the module is the input itself and
        the entry says float16 when the layer cannot take ``spec``.
    """
    layout = choose_layout(kind, tuple(module.weight.shape), spec, scale_dtype, adapt)
    if layout is None:
        return module, {"type": kind, **float_spec(FALLBACK_FLOAT).to_dict()}
    new = _quantize_layer(module, kind, layout, scale_dtype)
    return new, {"type": kind, "mode": layout.mode, "bits": layout.bits, "group_size": layout.group_size}


def _cast_float_params(model: nn.Module, float_dtype: str, per_layer: dict[str, str]) -> None:
    """Cast float parameters outside quantized layers; quantized scales stay float32."""
    default = FLOAT_DTYPES[float_dtype]
    for path, module in model.named_modules():
        if isinstance(module, (*QUANTIZED_TYPES, WideBatchNorm)):
            continue
        own = {k: v for k, v in module.items() if isinstance(v, mx.array)}
        if not own:
            continue
        dtype = FLOAT_DTYPES[per_layer[path]] if path in per_layer else default
        module.update({k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in own.items()})


def quantize_model(
    model: nn.Module,
    recipe: Recipe,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> dict:
    """Quantize ``model`` in place according to ``recipe``.

    Args:
        model: a float model (parameters evaluated, eval mode).
        recipe: the storage plan.
        progress: called with (fraction, message) per layer.
        should_stop: polled between layers; a true answer raises Cancelled.
        input_shape: (H, W, C) of one input. With it, layers are ordered as they
            run (for keep-first/last) and BatchNorm folding (``recipe.fold_bn``)
            can trace the model; without it nothing is folded.

    Returns:
        The quantization config to store in the bundle; ``apply_quant_config``
        rebuilds the same structure from it.
    """
    folded = folded_pairs(model)
    layers = quantizable_layers(model, input_shape)
    plan = recipe.plan(layers)
    half = recipe.compute_dtype in HALF_DTYPES
    if recipe.fold_bn and input_shape is not None and (half or any(s.quantized for s in plan.values())):
        folded += fold_batchnorm(model, input_shape)
        layers = quantizable_layers(model, input_shape)
        plan = recipe.plan(layers)
    modules = dict(model.named_modules())
    entries: dict[str, dict] = {}
    float_layers: dict[str, str] = {}
    replacements: dict[str, nn.Module] = {}
    for i, info in enumerate(layers):
        if should_stop is not None and should_stop():
            raise Cancelled()
        spec = plan[info.path]
        if spec.quantized:
            new, entry = quantize_layer(modules[info.path], info.kind, spec, recipe.scale_dtype, recipe.adapt_layout)
            if "mode" in entry:
                mx.eval(new.parameters())
                replacements[info.path] = new
            else:
                float_layers[info.path] = entry["dtype"]
        else:
            entry = {"type": info.kind, **spec.to_dict()}
            if spec.dtype != recipe.float_dtype:
                float_layers[info.path] = spec.dtype
        entries[info.path] = entry
        if progress is not None:
            progress((i + 1) / len(layers), f"{info.path}: {LayerSpec.from_dict(entry).label()}")
    replace_modules(model, replacements)
    wide = widen_batchnorms(model) if half else []
    _cast_float_params(model, recipe.float_dtype, float_layers)
    mx.eval(model.parameters())
    extra = {"wide_norms": True} if wide else {}
    return quant_config(recipe, folded, entries, **extra)


def quant_config(recipe: Recipe, folded, entries: dict[str, dict], **extra) -> dict:
    """The bundle's ``quantization`` entry: the recipe, its dtypes, the folded pairs and each layer's entry."""
    return {
        "recipe": recipe.to_dict(),
        "float_dtype": recipe.float_dtype,
        "compute_dtype": recipe.compute_dtype,
        "scale_dtype": recipe.scale_dtype,
        "folded": [list(p) for p in folded],
        "layers": entries,
        **extra,
    }


def empty_quantized_layer(module: nn.Module, entry: dict) -> nn.Module:
    """A quantized module of the right structure for ``module`` and its config entry (weights to be loaded)."""
    spec = LayerSpec.from_dict(entry)
    kind = entry.get("type") or layer_kind(module)
    # A calibrated method's bias correction may give a bias-less layer one (entry "bias": true).
    has_bias = "bias" in module or bool(entry.get("bias"))
    if kind == "linear":
        out_dims, in_dims = module.weight.shape
        return nn.QuantizedLinear(in_dims, out_dims, has_bias, spec.group_size, spec.bits, spec.mode)
    if kind == "depthwise":
        c, kh, kw, _ = module.weight.shape
        return QuantizedDepthwiseConv2d(
            c, (kh, kw), module.stride, module.padding, has_bias, spec.group_size, spec.bits, spec.mode
        )
    out_ch, kh, kw, in_pg = module.weight.shape
    groups = getattr(module, "groups", 1)
    return QuantizedConv2d(
        in_pg * groups,
        out_ch,
        (kh, kw),
        module.stride,
        module.padding,
        getattr(module, "dilation", 1),
        groups,
        has_bias,
        spec.group_size,
        spec.bits,
        spec.mode,
    )


def apply_quant_config(model: nn.Module, qconfig: dict | None) -> None:
    """Give a freshly built float model the structure recorded by ``quantize_model``.

    The weights are then loaded with ``model.load_weights`` (strict), so any
    mismatch between the recorded structure and the file is an error.
    """
    if not qconfig:
        return
    modules = dict(model.named_modules())
    pairs = [tuple(p) for p in qconfig.get("folded", [])]
    for conv_path, bn_path in pairs:
        for path in (conv_path, bn_path):
            if path not in modules:
                raise ValueError(f"the quantization config folds layer '{path}', which the model does not have")
    install_folds(model, pairs)
    replacements = {}
    float_layers = {}
    for path, entry in qconfig.get("layers", {}).items():
        module = modules.get(path)
        if module is None:
            raise ValueError(f"the quantization config names layer '{path}', which the model does not have")
        spec = LayerSpec.from_dict(entry)
        if not spec.quantized:
            if spec.dtype != qconfig.get("float_dtype", "float32"):
                float_layers[path] = spec.dtype
            continue
        replacements[path] = empty_quantized_layer(module, entry)
    replace_modules(model, replacements)
    if qconfig.get("wide_norms"):
        widen_batchnorms(model)
    _cast_float_params(model, qconfig.get("float_dtype", "float32"), float_layers)


# -- storage -------------------------------------------------------------------------------
# Affine scales and biases are computed in float32 (MLX's CPU kernels are fast only with
# float32) but, with scale_dtype float16, hold float16 values; they are written as float16
# and widened again on load.


def _stored_scale_keys(qconfig: dict | None) -> set[str]:
    if not qconfig or qconfig.get("scale_dtype", "float32") == "float32":
        return set()
    keys = set()
    for path, entry in qconfig.get("layers", {}).items():
        if entry.get("mode") == "affine":
            keys.update((f"{path}.scales", f"{path}.biases"))
    return keys


def storage_dtype(qconfig: dict | None, key: str) -> str | None:
    """The dtype ``key`` is written in when it differs from its in-memory dtype, else None."""
    return qconfig.get("scale_dtype") if key in _stored_scale_keys(qconfig) else None


def to_storage(weights: dict[str, mx.array], qconfig: dict | None) -> dict[str, mx.array]:
    keys = _stored_scale_keys(qconfig)
    if not keys:
        return weights
    dtype = FLOAT_DTYPES[qconfig["scale_dtype"]]
    return {k: (v.astype(dtype) if k in keys and v.dtype == mx.float32 else v) for k, v in weights.items()}


def from_storage(weights: dict[str, mx.array], qconfig: dict | None) -> dict[str, mx.array]:
    keys = _stored_scale_keys(qconfig)
    if not keys:
        return weights
    return {k: (v.astype(mx.float32) if k in keys else v) for k, v in weights.items()}


def stored_nbytes(qconfig: dict | None, key: str, array: mx.array) -> int:
    dtype = storage_dtype(qconfig, key)
    if dtype is None or array.dtype != mx.float32:
        return array.nbytes
    return array.size * FLOAT_DTYPES[dtype].size


def parameter_bytes(model: nn.Module) -> int:
    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))
