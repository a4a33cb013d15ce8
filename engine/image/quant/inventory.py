"""A float model's quantizable layers and the size a recipe would give it, priced without quantizing."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.errors import UserError
from engine.image.quant.apply import LayerInfo, quantizable_layers
from engine.image.quant.fold import fold_batchnorm
from engine.image.quant.formats import DTYPE_BYTES
from engine.image.quant.recipes import Recipe
from engine.image.quant.sizing import layer_bytes


@dataclass(frozen=True)
class LayerInventory:
    """What a recipe is resolved against (after BatchNorm folding when ``folded``)."""

    model: str
    layers: tuple[LayerInfo, ...]
    other_params: int  # parameters outside the quantizable weights and biases (norms, ...)
    other_bytes: int  # their float32 bytes
    folded: tuple[tuple[str, str], ...]
    float_bytes: int  # the float32 model's parameter bytes before folding

    @property
    def params(self) -> int:
        return sum(i.params for i in self.layers) + self.other_params


@dataclass(frozen=True)
class PlannedLayer:
    path: str
    kind: str
    params: int
    format: str
    bytes: int


@dataclass(frozen=True)
class PlanEstimate:
    layers: tuple[PlannedLayer, ...]
    bytes: int
    params: int

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.bytes / self.params if self.params else 0.0


def prepare_float_model(bundle, fold_bn: bool = True):
    """A float copy of ``bundle`` (BatchNorm folded when asked), its layers and the folded pairs.

    Raises:
        UserError: the bundle is already quantized.
    """
    if bundle.quantization:
        raise UserError(f"model '{bundle.name}' is already quantized ({bundle.recipe_name}); start from a float model")
    work = bundle.clone()
    folded = fold_batchnorm(work.model, bundle.input_shape()) if fold_bn else []
    layers = quantizable_layers(work.model, bundle.input_shape())
    return work, layers, folded


def other_weights(model, layers: list[LayerInfo]) -> tuple[int, int]:
    """(float32 bytes, element count) of every parameter outside the quantizable weights and biases."""
    from mlx.utils import tree_flatten

    names = {f"{i.path}.weight" for i in layers} | {f"{i.path}.bias" for i in layers if i.has_bias}
    rest = [v for k, v in tree_flatten(model.parameters()) if k not in names]
    return sum(4 * v.size for v in rest), sum(v.size for v in rest)


def inventory(bundle, fold_bn: bool = True) -> LayerInventory:
    """The quantizable layers of a float bundle, as the quantizer will see them."""
    from mlx.utils import tree_flatten

    work, layers, folded = prepare_float_model(bundle, fold_bn)
    other_bytes, other_params = other_weights(work.model, layers)
    float_bytes = sum(4 * v.size for _, v in tree_flatten(bundle.model.parameters()))
    return LayerInventory(bundle.name, tuple(layers), other_params, other_bytes, tuple(folded), float_bytes)


def estimate(inv: LayerInventory, recipe: Recipe) -> PlanEstimate:
    """Per-layer formats and bytes ``recipe`` gives, and the whole model's size (pure arithmetic)."""
    plan = recipe.plan(list(inv.layers))
    rows = []
    for info in inv.layers:
        spec = plan[info.path]
        nbytes = layer_bytes(info.kind, info.shape, spec, info.has_bias, recipe.scale_dtype, recipe.adapt_layout)
        rows.append(PlannedLayer(info.path, info.kind, info.params, spec.name(), nbytes))
    other = inv.other_bytes * DTYPE_BYTES[recipe.float_dtype] // 4
    return PlanEstimate(tuple(rows), sum(r.bytes for r in rows) + other, inv.params)
