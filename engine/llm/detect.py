"""Language-model specs without loading anything: names, configs, display names.

An mlx-lm folder has a config.json with ``model_type`` (and no ``arch``, which
image bundles carry); a ``.gguf`` file is a llama.cpp model; ``org/name`` that
is not a local path is a Hugging Face id. ``default-lm`` is the shipped model.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.core import paths

DEFAULT_LM_NAME = "default-lm"
DEFAULT_LM_DIR = paths.DEFAULT_LM_DIR
DEFAULT_TEXT = paths.RESOURCES / "data" / "moby_dick_heldout.txt"


def resolve_lm_spec(spec: str | Path) -> str:
    """'default-lm' -> the shipped folder; paths are expanded; anything else is kept."""
    text = str(spec)
    if text == DEFAULT_LM_NAME:
        return str(DEFAULT_LM_DIR)
    p = Path(text).expanduser()
    return str(p) if p.exists() else text


def read_lm_config(path: Path) -> dict | None:
    """config.json of an mlx-lm folder, or None if ``path`` is not one."""
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict) or "arch" in cfg or "model_type" not in cfg:
        return None
    return cfg


def lm_recipe_name(cfg: dict) -> str:
    """A short name for how an mlx-lm config stores its weights: fp32, int4, int4-g32, mxfp4, mixed…"""
    mqs = cfg.get("mqs") or {}
    if mqs.get("recipe"):
        return str(mqs["recipe"])
    q = cfg.get("quantization") or cfg.get("quantization_config")
    if not q or not isinstance(q, dict) or "bits" not in q:
        dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
        return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype, dtype)
    specs = {(v.get("mode", "affine"), v.get("bits"), v.get("group_size")) for v in q.values() if isinstance(v, dict)}
    base = (q.get("mode", "affine"), q.get("bits"), q.get("group_size"))
    if specs - {base}:
        return "mixed"
    mode, bits, gs = base
    if mode != "affine":
        return str(mode)
    return f"int{bits}" if gs == 64 else f"int{bits}-g{gs}"


def display_name(path: Path) -> str:
    """'default-lm', 'org/name' for a Hugging Face cache snapshot, else the folder or file name."""
    if path.resolve() == DEFAULT_LM_DIR.resolve():
        return DEFAULT_LM_NAME
    parts = path.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--") :].replace("--", "/")
    return path.stem if path.is_file() else path.name
