"""Recipes: how every layer of a model is stored, by name and by default."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from engine.errors import UserError
from engine.quant.formats import MODE_RULES, LayerSpec, float_spec, quantized_spec


@dataclass(frozen=True)
class Recipe:
    """A whole-model storage plan.

    Attributes:
        name: short name shown in tables ("int4", "fp16", ...).
        default: the spec for every quantizable layer (Linear, Conv2d, depthwise).
        float_dtype: dtype of everything left in float (BatchNorm, biases, float layers).
        compute_dtype: dtype of activations; quantized models keep float32 activations
            because MLX's CPU quantized matmul is 40-60x slower with float16 inputs.
        overrides: (glob pattern on the layer path, spec) pairs; the first match wins.
    """

    name: str
    default: LayerSpec
    float_dtype: str = "float32"
    compute_dtype: str = "float32"
    overrides: tuple[tuple[str, LayerSpec], ...] = field(default_factory=tuple)

    def spec_for(self, path: str) -> LayerSpec:
        for pattern, spec in self.overrides:
            if fnmatch.fnmatchcase(path, pattern):
                return spec
        return self.default

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "default": self.default.to_dict(),
            "float_dtype": self.float_dtype,
            "compute_dtype": self.compute_dtype,
            "overrides": [[p, s.to_dict()] for p, s in self.overrides],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(
            name=d["name"],
            default=LayerSpec.from_dict(d["default"]),
            float_dtype=d.get("float_dtype", "float32"),
            compute_dtype=d.get("compute_dtype", "float32"),
            overrides=tuple((p, LayerSpec.from_dict(s)) for p, s in d.get("overrides", [])),
        )


FLOAT_RECIPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
FP_MODE_RECIPES = ("mxfp4", "mxfp8", "nvfp4")
_INT_RE = re.compile(r"^int([2-8])$")


def builtin_names() -> list[str]:
    ints = [f"int{b}" for b in sorted(MODE_RULES["affine"]["bits"], reverse=True)]
    return list(FLOAT_RECIPES) + ints + list(FP_MODE_RECIPES)


def make_recipe(name: str, group_size: int | None = None) -> Recipe:
    """Build a named recipe.

    Args:
        name: fp32, fp16, bf16, int8/int6/int5/int4/int3/int2, mxfp4, mxfp8, nvfp4.
        group_size: for intN, 32, 64 or 128 (default 64).

    Raises:
        UserError: for an unknown name or an impossible group size.
    """
    key = name.strip().lower()
    if key in FLOAT_RECIPES:
        if group_size is not None:
            raise UserError(f"recipe '{key}' is a float format and takes no group size")
        dtype = FLOAT_RECIPES[key]
        return Recipe(key, float_spec(dtype), float_dtype=dtype, compute_dtype=dtype)
    m = _INT_RE.match(key)
    if m:
        spec = quantized_spec("affine", int(m.group(1)), 64 if group_size is None else group_size)
        label = key if spec.group_size == 64 else f"{key}-g{spec.group_size}"
        return Recipe(label, spec)
    if key in FP_MODE_RECIPES:
        return Recipe(key, quantized_spec(key, None, group_size))
    raise UserError(f"unknown recipe '{name}' (known: {', '.join(builtin_names())})")
