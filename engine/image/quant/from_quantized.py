"""Fine-tuning that starts from a quantized model and keeps the grid it was quantized on.

A bundle made by a calibrated method (GPTQ, GPTQ+BC, AdaRound) stores MLX's affine triple
per layer, but its per-group scales and biases are not the min/max of the values they
hold (AdaRound searches a clipped range, GPTQ chooses codes with error feedback), so
re-quantizing its dequantized weights with RTN's min/max rule would move them off that
grid and lose what the method found. Here the quantized model Q becomes a float student
whose latent weights are Q's dequantized weights, and every affine layer is fake-quantized
on Q's own grid::

    codes = clip(round((w - bias_g) / scale_g), 0, 2^bits - 1),   fq(w) = scale_g * codes + bias_g

with Q's stored per-group ``scale_g``/``bias_g`` held fixed (they are not trained), the
gradient passing the rounding unchanged (straight-through). Before any step ``fq(w)`` is
exactly Q's weight, so the student computes what Q computes. At the end the trained
weights' codes on that grid are packed into a copy of Q: same config, layouts, group
sizes, scales and biases; only the codes and the float parameters (biases, float
layers) change. Layers in a float-scaled format (mxfp4/mxfp8/nvfp4; every method leaves
them rounded to nearest) are re-quantized with MLX's own rule, as in QAT from a float model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from engine.core.errors import UserError
from engine.image.models import registry
from engine.image.quant.fold import install_folds
from engine.image.quant.formats import LayerSpec
from engine.image.quant.layers import conv_matrix, depthwise_matrix, quantize_matrix
from engine.image.quant.methods.affine import pack_codes, unpack_codes
from engine.image.quant.recipes import Recipe, resolve_recipe
from engine.image.quant.sizing import padded_dims


@dataclass(frozen=True)
class GridLayer:
    """One quantized layer of Q: its format and, for affine layers, its fixed grid."""

    path: str
    kind: str  # 'linear', 'conv' or 'depthwise'
    spec: LayerSpec
    shape: tuple[int, ...]  # the float weight's MLX layout
    rows: int
    cols: int
    scales: mx.array  # (rows_p, cols_p / group_size), float32, as Q stores them
    biases: mx.array | None  # None for the float-scaled modes

    @property
    def affine(self) -> bool:
        return self.spec.mode == "affine"

    @property
    def padded(self) -> tuple[int, int]:
        return padded_dims(self.rows, self.cols, self.spec.group_size, self.spec.mode)


def stored_recipe(q, given: str | Recipe | None = None) -> Recipe:
    """The recipe Q was quantized with (from its config).

    Raises:
        UserError: ``given`` (a recipe the user named) is not that recipe. A quantized model is
            fine-tuned on its own formats; to change them, start from the float model.
    """
    recipe = Recipe.from_dict(q.quantization["recipe"])
    if given is not None:
        wanted = resolve_recipe(given)
        if wanted.to_dict() != recipe.to_dict():
            raise UserError(
                f"model '{q.name}' is already quantized with {recipe.name} ({method_of(q)}); recipe {wanted.name} "
                "disagrees: leave the recipe out to fine-tune on its own formats and grid, or start from a float model"
            )
    return recipe


def method_of(q) -> str:
    """How Q's codes were chosen: its config's method, else its source's, else RTN."""
    return (q.quantization or {}).get("method", {}).get("name") or q.source.get("method") or "rtn"


def _matrix(w: mx.array, kind: str) -> mx.array:
    if kind == "linear":
        return w
    if kind == "depthwise":
        return depthwise_matrix(w)
    return conv_matrix(w)


def _unmatrix(m: mx.array, layer: GridLayer) -> mx.array:
    if layer.kind == "depthwise":
        c, kh, kw, _ = layer.shape
        return m.T.reshape(c, kh, kw, 1)
    return m.reshape(layer.shape)


def _pad(m: mx.array, layer: GridLayer) -> mx.array:
    rows_p, cols_p = layer.padded
    if (rows_p, cols_p) == (layer.rows, layer.cols):
        return m
    return mx.pad(m, [(0, rows_p - layer.rows), (0, cols_p - layer.cols)])


def grid_codes(m_padded: mx.array, layer: GridLayer) -> mx.array:
    """Nearest codes of a padded matrix on the layer's fixed grid, clipped to the code range (float32)."""
    gs = layer.spec.group_size
    s = mx.repeat(layer.scales, gs, axis=1)
    b = mx.repeat(layer.biases, gs, axis=1)
    safe = mx.where(s == 0, mx.ones_like(s), s)  # a zero scale (constant group) keeps code 0
    q = mx.round((m_padded.astype(mx.float32) - b) / safe)
    return mx.where(s == 0, mx.zeros_like(q), mx.clip(q, 0, (1 << layer.spec.bits) - 1))


def grid_fake_weight(w: mx.array, layer: GridLayer) -> mx.array:
    """The weight a layer stores for latent weight ``w``: on Q's grid (affine) or MLX's rule (other modes)."""
    m = _matrix(w, layer.kind)
    spec = layer.spec
    if not layer.affine:
        wq, scales, biases = quantize_matrix(m, spec.group_size, spec.bits, spec.mode, "float32")
        deq = mx.dequantize(wq, scales, biases, group_size=spec.group_size, bits=spec.bits, mode=spec.mode)
        return _unmatrix(deq[: layer.rows, : layer.cols], layer).astype(w.dtype)
    gs = spec.group_size
    q = grid_codes(_pad(m, layer), layer)
    fq = mx.repeat(layer.scales, gs, axis=1) * q + mx.repeat(layer.biases, gs, axis=1)
    return _unmatrix(fq[: layer.rows, : layer.cols], layer).astype(w.dtype)


def _dequantized(module: nn.Module, kind: str) -> mx.array:
    if kind == "linear":
        return mx.dequantize(
            module["weight"],
            module["scales"],
            module.get("biases"),
            group_size=module.group_size,
            bits=module.bits,
            mode=module.mode,
        )
    return module.dequantized_weight()


def float_student(q):
    """A float copy of quantized bundle ``q`` whose weights are Q's dequantized weights.

    Returns:
        (student ModelBundle with ``quantization`` None, {path: GridLayer} of Q's quantized
        layers, {path: (kind, spec)} of the layers stored in a float dtype other than float32).
    """
    from engine.image.bundle import ModelBundle

    qcfg = q.quantization
    model = registry.get(q.arch).build(q.arch_config)
    install_folds(model, [tuple(p) for p in qcfg.get("folded", [])])
    modules = dict(model.named_modules())
    q_modules = dict(q.model.named_modules())
    grid: dict[str, GridLayer] = {}
    float_plan: dict[str, tuple[str, LayerSpec]] = {}
    new: dict[str, mx.array] = {}
    for path, entry in qcfg.get("layers", {}).items():
        spec = LayerSpec.from_dict(entry)
        kind = entry.get("type")
        if not spec.quantized:
            if spec.dtype != "float32":
                float_plan[path] = (kind, spec)
            continue
        qm, fm = q_modules[path], modules[path]
        w = _dequantized(qm, kind).astype(mx.float32)
        if tuple(w.shape) != tuple(fm.weight.shape):
            raise UserError(f"layer {path} of '{q.name}' dequantizes to {w.shape}, the model has {fm.weight.shape}")
        rows, cols = _matrix(fm.weight, kind).shape
        if "bias" in qm and "bias" not in fm:  # bias correction gave a bias-less layer one
            fm.bias = mx.zeros((fm.weight.shape[0],))
        new[f"{path}.weight"] = w
        if "bias" in qm:
            new[f"{path}.bias"] = qm["bias"].astype(mx.float32)
        grid[path] = GridLayer(
            path,
            kind,
            spec,
            tuple(fm.weight.shape),
            rows,
            cols,
            qm["scales"].astype(mx.float32) if spec.mode == "affine" else qm["scales"],
            qm["biases"].astype(mx.float32) if "biases" in qm else None,
        )
    for key, value in tree_flatten(q.model.parameters()):
        owner = key.rsplit(".", 1)[0]
        if owner not in grid:
            new[key] = value.astype(mx.float32) if mx.issubdtype(value.dtype, mx.floating) else value
    model.load_weights(list(new.items()), strict=True)
    model.eval()
    mx.eval(model.parameters())
    student = ModelBundle(
        name=q.name,
        arch=q.arch,
        arch_config=copy.deepcopy(q.arch_config),
        preprocessing=q.preprocessing,
        labels=list(q.labels),
        model=model,
        source=copy.deepcopy(q.source),
        path=q.path,
    )
    return student, grid, float_plan


def store_on_grid(q, trained: nn.Module, grid: dict[str, GridLayer], steps: int):
    """A copy of ``q`` holding the codes of ``trained``'s weights on q's grid and its trained float parameters.

    Affine layers keep q's scales and biases (and q's codes in the zero padding); float-scaled
    layers are re-quantized with MLX's rule; every other parameter takes the trained value in
    the dtype q stores it in. The config is q's, plus a ``finetune`` entry.
    """
    out = q.clone()
    stored = dict(tree_flatten(out.model.parameters()))
    trained_params = dict(tree_flatten(trained.parameters()))
    new: dict[str, mx.array] = {}
    for key, value in stored.items():
        owner, name = key.rsplit(".", 1)
        layer = grid.get(owner)
        if layer is None or name == "bias":
            new[key] = trained_params[key].astype(value.dtype)
    for path, layer in grid.items():
        m = _matrix(trained_params[f"{path}.weight"], layer.kind)
        spec = layer.spec
        if layer.affine:
            rows_p, cols_p = layer.padded
            codes = unpack_codes(np.array(stored[f"{path}.weight"]), spec.bits, cols_p)
            new_codes = np.array(grid_codes(_pad(m, layer), layer)).astype(np.int64)
            codes[: layer.rows, : layer.cols] = new_codes[: layer.rows, : layer.cols]
            new[f"{path}.weight"] = mx.array(pack_codes(codes, spec.bits))
        else:
            wq, scales, biases = quantize_matrix(m, spec.group_size, spec.bits, spec.mode, "float32")
            new[f"{path}.weight"], new[f"{path}.scales"] = wq, scales
            if biases is not None:
                new[f"{path}.biases"] = biases
    out.model.load_weights(list(new.items()), strict=False)
    mx.eval(out.model.parameters())
    out.quantization = {
        **copy.deepcopy(q.quantization),
        "finetune": {
            "from": str(q.path) if q.path else q.name,
            "from_method": method_of(q),
            "grid": "kept (affine layers: the starting model's scales and biases, fixed)",
            "steps": steps,
        },
    }
    out._hash = None
    return out
