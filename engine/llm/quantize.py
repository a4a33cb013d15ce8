"""Quantize language models with mlx-lm's conventions.

The output folder is what ``mlx_lm.convert`` writes: ``model.safetensors`` (+ index),
``config.json`` with ``quantization`` / ``quantization_config`` (per-layer entries for
layers that differ from the default), and the tokenizer files, so ``mlx_lm.load``
and ``mlx_lm.generate`` use it unchanged. Our own provenance goes under the
``mqs`` key, which mlx-lm ignores.

Recipes: ``fp32``/``fp16``/``bf16`` (a dtype cast), ``int8`` … ``int2`` (affine,
group size 32/64/128), ``mxfp4``/``mxfp8``/``nvfp4``, mlx-lm's mixed recipes
(``mixed_2_6``, ``mixed_3_4``, ``mixed_3_6``, ``mixed_4_6``), a JSON recipe file
with per-layer glob overrides, or a :class:`Recipe` (e.g. from the sensitivity
search). On the CPU backend the model is widened to float32 before quantizing,
so scales/biases are float32 and activations stay float32.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

from engine.core.errors import Cancelled, UserError
from engine.core.fileio import atomic_directory, check_output_dir
from engine.core.memory_guard import QUANTIZE_FACTOR
from engine.image.quant.formats import FLOAT_DTYPES
from engine.image.quant.recipes import Recipe, builtin_names, make_recipe
from engine.llm.detect import resolve_lm_spec
from engine.llm.loader import (
    LanguageModel,
    LanguageModelCard,
    guard_memory,
    language_model_card,
    load_language_model,
    on_cpu,
)

MIXED_RECIPES = ("mixed_2_6", "mixed_3_4", "mixed_3_6", "mixed_4_6")


def lm_recipe_names() -> list[str]:
    return builtin_names() + list(MIXED_RECIPES)


def resolve_recipe(name: str | Recipe, group_size: int | None = None) -> Recipe | str:
    """A Recipe, or the name of an mlx-lm mixed recipe; JSON files hold Recipe.to_dict()."""
    if isinstance(name, Recipe):
        return name
    key = name.strip()
    if key.lower() in MIXED_RECIPES:
        return key.lower()
    if key.lower().endswith(".json"):
        p = Path(key).expanduser()
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            return Recipe.from_dict(d)
        except OSError:
            raise UserError("recipe file not found", p) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"not a recipe file ({exc})", p) from None
    return make_recipe(key, group_size)


def recipe_predicate(recipe: Recipe) -> Callable[[str, nn.Module], bool | dict]:
    """mlx-lm's quant_predicate for a recipe: False keeps a layer float, a dict overrides the default."""
    default = recipe.default

    def predicate(path: str, module: nn.Module) -> bool | dict:
        spec = recipe.spec_for(path)
        if not spec.quantized:
            return False
        if module.weight.shape[-1] % spec.group_size:
            return False
        if spec == default:
            return True
        return {"group_size": spec.group_size, "bits": spec.bits, "mode": spec.mode}

    return predicate


def cast_floats(model: nn.Module, dtype: mx.Dtype) -> None:
    model.update(tree_map(lambda x: x.astype(dtype) if mx.issubdtype(x.dtype, mx.floating) else x, model.parameters()))


def quantize_in_place(
    lm: LanguageModel,
    recipe: Recipe | str,
    group_size: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Quantize ``lm.model`` in place; returns the new mlx-lm config."""
    from mlx_lm.utils import quantize_model

    if lm.config.get("quantization"):
        raise UserError(f"'{lm.name}' is already quantized ({lm.recipe_name}); start from a float model")
    config = copy.deepcopy(lm.config)
    config.pop("quantization_config", None)
    if isinstance(recipe, Recipe) and not recipe.default.quantized and not recipe.overrides:
        cast_floats(lm.model, FLOAT_DTYPES[recipe.default.dtype])
        config["torch_dtype"] = recipe.default.dtype
        mx.eval(lm.model.parameters())
        return config
    if on_cpu():
        cast_floats(lm.model, mx.float32)
        config["torch_dtype"] = "float32"
    if isinstance(recipe, str):
        from mlx_lm.convert import mixed_quant_predicate_builder

        inner = mixed_quant_predicate_builder(recipe, lm.model, group_size or 64)
        gs, bits, mode = group_size or 64, int(recipe.split("_")[1]), "affine"
    else:
        inner = recipe_predicate(recipe)
        gs, bits, mode = recipe.default.group_size, recipe.default.bits, recipe.default.mode
    total = sum(1 for _, m in lm.model.named_modules() if hasattr(m, "to_quantized"))
    seen = [0]

    def predicate(path: str, module: nn.Module):
        if should_stop and should_stop():
            raise Cancelled()
        seen[0] += 1
        if progress:
            progress(min(1.0, seen[0] / max(1, total)), f"quantizing {path}")
        return inner(path, module)

    with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints the bits per weight
        _, config = quantize_model(lm.model, config, gs, bits, mode=mode, quant_predicate=predicate)
    mx.eval(lm.model.parameters())
    return config


def save_language_model(lm: LanguageModel, config: dict, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write an mlx-lm folder atomically (temporary sibling, then rename); never over its own source."""
    from mlx_lm.utils import save_config, save_model

    out = Path(out).expanduser().resolve()
    inputs = (lm.path,) if Path(lm.path).exists() else ()
    with atomic_directory(out, "language model", overwrite=overwrite, inputs=inputs) as tmp:
        save_model(tmp, lm.model)
        save_config(copy.deepcopy(config), config_path=tmp / "config.json")
        lm.tokenizer.save_pretrained(str(tmp))
        src = Path(lm.path)
        if src.is_dir() and (src / "generation_config.json").is_file():
            shutil.copy(src / "generation_config.json", tmp / "generation_config.json")
    return out


@dataclass(frozen=True)
class LMQuantizeResult:
    path: str
    recipe: str
    card: LanguageModelCard
    source: LanguageModelCard
    seconds: float


def recipe_label(recipe: Recipe | str) -> str:
    return recipe if isinstance(recipe, str) else recipe.name


def quantize_language_model(
    source: str | Path,
    recipe: Recipe | str,
    out: str | Path,
    group_size: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    overwrite: bool = False,
) -> LMQuantizeResult:
    """Load ``source`` afresh, quantize it with ``recipe`` and save an mlx-lm folder at ``out``.

    ``out`` is checked before any work (:func:`engine.core.fileio.check_output_dir`).
    """
    recipe = resolve_recipe(recipe, group_size) if isinstance(recipe, str) else recipe
    t0 = time.perf_counter()
    src_path = Path(resolve_lm_spec(source))
    check_output_dir(out, overwrite=overwrite, inputs=(src_path,) if src_path.exists() else ())
    if src_path.exists():
        guard_memory(src_path, QUANTIZE_FACTOR, "quantize")
    lm = load_language_model(source, widen=False)
    src_card = lm.card
    config = quantize_in_place(lm, recipe, group_size, progress, should_stop)
    label = recipe_label(recipe)
    if isinstance(recipe, str) and group_size and group_size != 64:
        label = f"{label}-g{group_size}"
    config["mqs"] = {"recipe": label, "parent": lm.path, "parent_fingerprint": src_card.fingerprint}
    if isinstance(recipe, Recipe):
        config["mqs"]["recipe_spec"] = recipe.to_dict()
    path = save_language_model(lm, config, out, overwrite=overwrite)
    seconds = time.perf_counter() - t0
    saved = LanguageModel(path.name, str(path), "folder", lm.model, lm.tokenizer, config)
    return LMQuantizeResult(str(path), label, language_model_card(saved), src_card, seconds)
