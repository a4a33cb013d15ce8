"""Recipes: how every layer of a model is stored, by name, by position, by kind and by default.

A recipe is resolved against a model's quantizable layers (``Recipe.plan``) in
this order, first match wins:

1. ``overrides``: (glob pattern on the layer path, spec) pairs, in order;
2. ``keep_first`` / ``keep_last``: the first and last quantizable layer (in
   execution order) in higher precision;
3. ``kind_overrides``: a spec per layer kind (conv, depthwise, linear);
4. ``default``.

``--recipe`` takes a format name (fp16, bf16, int8 ... int2, mxfp4, mxfp8,
nvfp4), a named mixed recipe (``mixed-4-8``: 4-bit body, 8-bit first, last and
depthwise layers) or a JSON file (see ``load_recipe_file``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.core.errors import UserError
from engine.image.quant.formats import (
    FLOAT_DTYPES,
    FLOAT_NAMES,
    MODE_RULES,
    LayerSpec,
    float_spec,
    format_names,
    parse_spec,
    quantized_spec,
)

KIND_NAMES = ("conv", "depthwise", "linear")


@dataclass(frozen=True)
class Recipe:
    """A whole-model storage plan.

    Attributes:
        name: short name shown in tables ("int4", "mixed-4-8", ...).
        default: the spec for every quantizable layer (Linear, Conv2d, depthwise) no rule names.
        float_dtype: dtype of everything left in float (BatchNorm, biases, float layers).
        compute_dtype: dtype of activations; quantized models keep float32 activations
            because MLX's CPU quantized matmul is 40-60x slower with float16 inputs.
        overrides: (glob pattern on the layer path, spec) pairs; the first match wins.
        kind_overrides: (layer kind, spec) pairs.
        keep_first, keep_last: specs for the first / last quantizable layer, or None.
        scale_dtype: dtype affine scales and biases are stored in (float16 halves their
            share of the file; computing stays float32).
        fold_bn: fold BatchNorm into the preceding conv before quantizing (when exact).
        adapt_layout: let a layer use a smaller group when that stores fewer bytes
            (see ``sizing.py``).
    """

    name: str
    default: LayerSpec
    float_dtype: str = "float32"
    compute_dtype: str = "float32"
    overrides: tuple[tuple[str, LayerSpec], ...] = field(default_factory=tuple)
    kind_overrides: tuple[tuple[str, LayerSpec], ...] = field(default_factory=tuple)
    keep_first: LayerSpec | None = None
    keep_last: LayerSpec | None = None
    scale_dtype: str = "float16"
    fold_bn: bool = True
    adapt_layout: bool = True

    def spec_for(self, path: str, kind: str | None = None, position: str | None = None) -> LayerSpec:
        """The spec of one layer; ``position`` is 'first', 'last' or None."""
        for pattern, spec in self.overrides:
            if fnmatch.fnmatchcase(path, pattern):
                return spec
        if position == "first" and self.keep_first is not None:
            return self.keep_first
        if position == "last" and self.keep_last is not None:
            return self.keep_last
        for k, spec in self.kind_overrides:
            if k == kind:
                return spec
        return self.default

    def plan(self, layers) -> dict[str, LayerSpec]:
        """Resolve every layer (objects with ``path`` and ``kind``, in execution order) to its spec."""
        out = {}
        n = len(layers)
        for i, info in enumerate(layers):
            position = "first" if i == 0 else ("last" if i == n - 1 else None)
            out[info.path] = self.spec_for(info.path, info.kind, position)
        return out

    @property
    def quantized(self) -> bool:
        specs = [self.default, self.keep_first, self.keep_last]
        specs += [s for _, s in self.overrides] + [s for _, s in self.kind_overrides]
        return any(s is not None and s.quantized for s in specs)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "default": self.default.to_dict(),
            "float_dtype": self.float_dtype,
            "compute_dtype": self.compute_dtype,
            "overrides": [[p, s.to_dict()] for p, s in self.overrides],
            "kind_overrides": [[k, s.to_dict()] for k, s in self.kind_overrides],
            "keep_first": self.keep_first.to_dict() if self.keep_first else None,
            "keep_last": self.keep_last.to_dict() if self.keep_last else None,
            "scale_dtype": self.scale_dtype,
            "fold_bn": self.fold_bn,
            "adapt_layout": self.adapt_layout,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        def opt(key):
            return LayerSpec.from_dict(d[key]) if d.get(key) else None

        return cls(
            name=d["name"],
            default=LayerSpec.from_dict(d["default"]),
            float_dtype=d.get("float_dtype", "float32"),
            compute_dtype=d.get("compute_dtype", "float32"),
            overrides=tuple((p, LayerSpec.from_dict(s)) for p, s in d.get("overrides", [])),
            kind_overrides=tuple((k, LayerSpec.from_dict(s)) for k, s in d.get("kind_overrides", [])),
            keep_first=opt("keep_first"),
            keep_last=opt("keep_last"),
            scale_dtype=d.get("scale_dtype", "float32"),
            fold_bn=bool(d.get("fold_bn", False)),
            adapt_layout=bool(d.get("adapt_layout", False)),
        )


FLOAT_RECIPES = FLOAT_NAMES
FP_MODE_RECIPES = ("mxfp4", "mxfp8", "nvfp4")
_INT_RE = re.compile(r"^int([0-9]+)(?:-g([0-9]+))?$")
_MIXED_RE = re.compile(r"^mixed-([0-9])-([0-9])$")
MIXED_RECIPES = ("mixed-4-8", "mixed-3-8", "mixed-2-8", "mixed-3-6")


def builtin_names() -> list[str]:
    """Format names (fp32 first) followed by the named mixed recipes."""
    return format_names() + list(MIXED_RECIPES)


def describe(name: str) -> str:
    """One line saying what a named recipe stores."""
    key = name.strip().lower()
    m = _MIXED_RE.match(key)
    if m:
        return (
            f"{m.group(1)}-bit group-wise affine body; first and last layers and depthwise convs "
            f"in {m.group(2)} bits; float32 activations"
        )
    fixed = {
        "fp32": "float32 weights and activations (the source model)",
        "fp16": "float16 weights and activations",
        "bf16": "bfloat16 weights and activations",
        "mxfp4": "OCP MX FP4 (E2M1, shared 8-bit exponent per 32 weights), float32 activations",
        "mxfp8": "OCP MX FP8 (E4M3, shared 8-bit exponent per 32 weights), float32 activations",
        "nvfp4": "NVIDIA FP4 (E2M1, FP8 scale per 16 weights), float32 activations",
    }
    if key in fixed:
        return fixed[key]
    m = _INT_RE.match(key)
    if m:
        return f"{m.group(1)}-bit group-wise affine weights (convolutions included), float32 activations"
    return "per-layer recipe"


def make_recipe(name: str, group_size: int | None = None, **options) -> Recipe:
    """Build a named recipe.

    Args:
        name: fp32, fp16, bf16, int8/int6/int5/int4/int3/int2 (optionally intN-gG),
            mxfp4, mxfp8, nvfp4, or mixed-B-H (B-bit body, H-bit first/last/depthwise).
        group_size: for intN and mixed recipes, 32, 64 or 128 (default 64).
        options: Recipe fields to set (keep_first, keep_last as specs or names,
            overrides as (pattern, spec-or-name) pairs, scale_dtype, fold_bn, ...).

    Raises:
        UserError: for an unknown name or an impossible group size.
    """
    key = name.strip().lower()
    if key in FLOAT_RECIPES:
        if group_size is not None:
            raise UserError(f"recipe '{key}' is a float format and takes no group size")
        dtype = FLOAT_RECIPES[key]
        # Half precision folds BatchNorm in float32 first: its statistics can exceed float16's range.
        recipe = Recipe(key, float_spec(dtype), float_dtype=dtype, compute_dtype=dtype, fold_bn=dtype != "float32")
        return with_options(recipe, group_size, **options)
    m = _INT_RE.match(key)
    if m:
        gs = int(m.group(2)) if m.group(2) else group_size
        try:
            spec = quantized_spec("affine", int(m.group(1)), 64 if gs is None else gs)
        except UserError as exc:
            raise UserError(f"unknown recipe '{name}': {exc}") from None
        return with_options(Recipe(spec.name(), spec), group_size, **options)
    if key in FP_MODE_RECIPES:
        return with_options(Recipe(key, quantized_spec(key, None, group_size)), group_size, **options)
    m = _MIXED_RE.match(key)
    if m:
        body, high = int(m.group(1)), int(m.group(2))
        if body >= high:
            raise UserError(f"mixed recipe '{key}': the body ({body} bits) must take fewer bits than the rest ({high})")
        gs = 64 if group_size is None else group_size
        body_spec, high_spec = quantized_spec("affine", body, gs), quantized_spec("affine", high, gs)
        label = key if gs == 64 else f"{key}-g{gs}"
        recipe = Recipe(
            label,
            body_spec,
            keep_first=high_spec,
            keep_last=high_spec,
            kind_overrides=(("depthwise", high_spec),),
        )
        return with_options(recipe, group_size, **options)
    raise UserError(f"unknown recipe '{name}' (known: {', '.join(builtin_names())}, or a .json recipe file)")


def with_options(recipe: Recipe, group_size: int | None = None, **options) -> Recipe:
    """``recipe`` with fields replaced; spec-valued options may be format names."""
    changes = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in ("keep_first", "keep_last", "default"):
            changes[key] = parse_spec(value, group_size) if not isinstance(value, LayerSpec) else value
        elif key == "overrides":
            extra = tuple((str(p), s if isinstance(s, LayerSpec) else parse_spec(s, group_size)) for p, s in value)
            changes[key] = extra + recipe.overrides  # given overrides come first, so they win
        elif key == "kind_overrides":
            changes[key] = tuple((k, s if isinstance(s, LayerSpec) else parse_spec(s, group_size)) for k, s in value)
        elif key in ("scale_dtype",):
            if value not in FLOAT_DTYPES:
                raise UserError(f"scale dtype must be one of {', '.join(FLOAT_DTYPES)}, not '{value}'")
            changes[key] = value
        elif key in ("fold_bn", "adapt_layout", "name"):
            changes[key] = value
        else:
            raise TypeError(f"unknown recipe option '{key}'")
    return replace(recipe, **changes) if changes else recipe


def load_recipe_file(path: str | Path, group_size: int | None = None) -> Recipe:
    """Read a recipe from JSON.

    The file holds either a recipe::

        {"name": "my-mix", "default": "int4", "group_size": 64,
         "keep_first": "int8", "keep_last": "int8",
         "kinds": {"depthwise": "int8"},
         "layers": {"conv4.conv": "int3", "head": "fp16", "features.*": "int4-g32"},
         "scale_dtype": "float16", "fold_bn": true}

    where every spec is a format name or a dict ({"mode": "affine", "bits": 4,
    "group_size": 32}) and ``layers`` maps exact layer names or glob patterns
    (first match wins, in file order); or a bundle's config.json (or its
    ``quantization`` object), which reproduces that bundle's per-layer choices.

    Raises:
        UserError: unreadable file, invalid JSON, unknown keys or formats.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError("recipe file not found", p)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"recipe file is not valid JSON ({exc})", p) from None
    if not isinstance(data, dict):
        raise UserError("recipe file must hold a JSON object", p)
    try:
        return recipe_from_json(data, group_size, default_name=p.stem)
    except UserError as exc:
        raise UserError(str(exc), p) from None


_JSON_KEYS = {
    "name",
    "default",
    "group_size",
    "keep_first",
    "keep_last",
    "kinds",
    "layers",
    "scale_dtype",
    "fold_bn",
    "adapt_layout",
    "float_dtype",
}


def recipe_from_json(data: dict, group_size: int | None = None, default_name: str = "custom") -> Recipe:
    """A Recipe from a parsed recipe file (see ``load_recipe_file``)."""
    if "quantization" in data and isinstance(data["quantization"], dict):
        data = data["quantization"]
    if "layers" in data and "recipe" in data:
        return recipe_from_qconfig(data)
    if "kind_overrides" in data and isinstance(data.get("default"), dict):  # a Recipe.to_dict() (a bundle's "recipe")
        try:
            return Recipe.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"recipe object is incomplete or malformed ({exc})") from None
    unknown = set(data) - _JSON_KEYS
    if unknown:
        raise UserError(f"unknown recipe keys {sorted(unknown)} (known: {sorted(_JSON_KEYS)})")
    gs = data.get("group_size", group_size)
    default = parse_spec(data.get("default", "fp32"), gs)
    layers = data.get("layers", {})
    if not isinstance(layers, dict):
        raise UserError("'layers' must map layer names or patterns to formats")
    kinds = data.get("kinds", {})
    bad = set(kinds) - set(KIND_NAMES)
    if bad:
        raise UserError(f"unknown layer kinds {sorted(bad)} (use {', '.join(KIND_NAMES)})")
    float_dtype = data.get("float_dtype")
    if float_dtype is None:
        float_dtype = default.dtype if not default.quantized else "float32"
    quantized_default = default.quantized or any(parse_spec(s, gs).quantized for s in layers.values())
    recipe = Recipe(
        name=str(data.get("name", default_name)),
        default=default,
        float_dtype=float_dtype,
        compute_dtype="float32" if quantized_default else float_dtype,
        fold_bn=quantized_default,
    )
    return with_options(
        recipe,
        gs,
        overrides=[(k, v) for k, v in layers.items()],
        kind_overrides=list(kinds.items()) or None,
        keep_first=data.get("keep_first"),
        keep_last=data.get("keep_last"),
        scale_dtype=data.get("scale_dtype"),
        fold_bn=data.get("fold_bn"),
        adapt_layout=data.get("adapt_layout"),
    )


def recipe_from_qconfig(qconfig: dict) -> Recipe:
    """A recipe that reproduces a stored model's per-layer choices exactly."""
    base = Recipe.from_dict(qconfig["recipe"])
    exact = tuple((exact_pattern(path), LayerSpec.from_dict(entry)) for path, entry in qconfig["layers"].items())
    return replace(
        base,
        overrides=exact,
        keep_first=None,
        keep_last=None,
        kind_overrides=(),
        scale_dtype=qconfig.get("scale_dtype", "float32"),
        fold_bn=bool(qconfig.get("folded")),
    )


def exact_pattern(path: str) -> str:
    """A glob that matches ``path`` only (escapes glob metacharacters)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


def resolve_recipe(recipe: str | Recipe | Path, group_size: int | None = None) -> Recipe:
    """A Recipe from a Recipe, a named recipe, or a path to a JSON recipe file."""
    if isinstance(recipe, Recipe):
        return recipe
    text = str(recipe).strip()
    if text.lower().endswith(".json") or ("/" in text and Path(text).expanduser().exists()):
        return load_recipe_file(text, group_size)
    return make_recipe(text, group_size)


def spec_choices(group_size: int = 64) -> list[str]:
    """Format names for a per-layer choice (the recipe editor's combo boxes)."""
    out = list(FLOAT_NAMES)
    out += [
        f"int{b}" if group_size == 64 else f"int{b}-g{group_size}"
        for b in sorted(MODE_RULES["affine"]["bits"], reverse=True)
    ]
    out += [m for m in format_names() if m.startswith(("mx", "nv"))]
    return out
