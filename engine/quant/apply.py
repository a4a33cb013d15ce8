"""Apply a recipe to a float model, and rebuild a quantized model from its config."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map_with_path

from engine.errors import Cancelled
from engine.quant.formats import FLOAT_DTYPES, MODE_RULES, LayerSpec, float_spec
from engine.quant.layers import QUANTIZED_TYPES, QuantizedConv2d, QuantizedDepthwiseConv2d
from engine.quant.recipes import Recipe


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


def _linear_group_size(module: nn.Linear, spec: LayerSpec) -> int | None:
    """The spec's group size if it divides the input dims, else the largest allowed one that does."""
    in_dims = module.weight.shape[1]
    if in_dims % spec.group_size == 0:
        return spec.group_size
    for gs in sorted(MODE_RULES[spec.mode]["group_sizes"], reverse=True):
        if in_dims % gs == 0:
            return gs
    return None


def _quantize_layer(module: nn.Module, kind: str, spec: LayerSpec) -> tuple[nn.Module, LayerSpec]:
    """Returns the replacement module and the spec actually used."""
    if kind == "linear":
        gs = _linear_group_size(module, spec)
        if gs is None:
            # No allowed group size divides the input; keep it in half precision.
            return module, float_spec("float16")
        q = nn.QuantizedLinear.from_linear(module, group_size=gs, bits=spec.bits, mode=spec.mode)
        return q, LayerSpec(spec.mode, spec.bits, gs, spec.dtype)
    if kind == "depthwise":
        return QuantizedDepthwiseConv2d.from_module(module, spec.group_size, spec.bits, spec.mode), spec
    return QuantizedConv2d.from_conv2d(module, spec.group_size, spec.bits, spec.mode), spec


def _cast_float_params(model: nn.Module, float_dtype: str, per_layer: dict[str, str]) -> None:
    """Cast float parameters outside quantized layers; quantized scales stay float32."""
    default = FLOAT_DTYPES[float_dtype]
    for path, module in model.named_modules():
        if isinstance(module, QUANTIZED_TYPES):
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
) -> dict:
    """Quantize ``model`` in place according to ``recipe``.

    Args:
        model: a float model (parameters evaluated).
        recipe: the storage plan.
        progress: called with (fraction, message) per layer.
        should_stop: polled between layers; a true answer raises Cancelled.

    Returns:
        The quantization config to store in the bundle; ``apply_quant_config``
        rebuilds the same structure from it.
    """
    targets = [(p, m, layer_kind(m)) for p, m in model.named_modules()]
    targets = [(p, m, k) for p, m, k in targets if k is not None and p]
    layers: dict[str, dict] = {}
    float_layers: dict[str, str] = {}
    replacements: dict[str, nn.Module] = {}
    for i, (path, module, kind) in enumerate(targets):
        if should_stop is not None and should_stop():
            raise Cancelled()
        spec = recipe.spec_for(path)
        if spec.quantized:
            new, used = _quantize_layer(module, kind, spec)
            mx.eval(new.parameters())
            if used.quantized:
                replacements[path] = new
                layers[path] = {"type": kind, **used.to_dict()}
            else:
                float_layers[path] = used.dtype
                layers[path] = {"type": kind, **used.to_dict()}
        else:
            if spec.dtype != recipe.float_dtype:
                float_layers[path] = spec.dtype
            layers[path] = {"type": kind, **spec.to_dict()}
        if progress is not None:
            progress((i + 1) / len(targets), f"{path}: {LayerSpec.from_dict(layers[path]).label()}")
    _replace(model, replacements)
    _cast_float_params(model, recipe.float_dtype, float_layers)
    mx.eval(model.parameters())
    return {
        "recipe": recipe.to_dict(),
        "float_dtype": recipe.float_dtype,
        "compute_dtype": recipe.compute_dtype,
        "layers": layers,
    }


def _replace(model: nn.Module, replacements: dict[str, nn.Module]) -> None:
    if not replacements:
        return

    def swap(path, m):
        return replacements.get(path, m)

    leaves = tree_map_with_path(swap, model.leaf_modules(), is_leaf=nn.Module.is_module)
    model.update_modules(leaves)


def apply_quant_config(model: nn.Module, qconfig: dict | None) -> None:
    """Give a freshly built float model the structure recorded by ``quantize_model``.

    The weights are then loaded with ``model.load_weights`` (strict), so any
    mismatch between the recorded structure and the file is an error.
    """
    if not qconfig:
        return
    modules = dict(model.named_modules())
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
        kind = entry.get("type") or layer_kind(module)
        if kind == "linear":
            out_dims, in_dims = module.weight.shape
            replacements[path] = nn.QuantizedLinear(
                in_dims, out_dims, "bias" in module, spec.group_size, spec.bits, spec.mode
            )
        elif kind == "depthwise":
            c, kh, kw, _ = module.weight.shape
            replacements[path] = QuantizedDepthwiseConv2d(
                c, (kh, kw), module.stride, module.padding, "bias" in module, spec.group_size, spec.bits, spec.mode
            )
        else:
            out_ch, kh, kw, in_pg = module.weight.shape
            groups = getattr(module, "groups", 1)
            replacements[path] = QuantizedConv2d(
                in_pg * groups,
                out_ch,
                (kh, kw),
                module.stride,
                module.padding,
                module.dilation,
                groups,
                "bias" in module,
                spec.group_size,
                spec.bits,
                spec.mode,
            )
    _replace(model, replacements)
    _cast_float_params(model, qconfig.get("float_dtype", "float32"), float_layers)


def parameter_bytes(model: nn.Module) -> int:
    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))
