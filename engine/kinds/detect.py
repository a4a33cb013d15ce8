"""Which kind a model is: the one place the app decides it (no MLX is imported here).

An image-classifier bundle is a folder whose config.json carries ``arch`` and ``labels``
(or ``default``, the shipped one). A language model is ``default-lm``, an mlx-lm folder
(config.json with ``model_type``), a ``.gguf`` file, or ``org/name`` that is no local path
(a Hugging Face id). The GUI, the command line and the service ask :func:`kind_of`; none
of them looks at a config.json to decide for itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.core import paths
from engine.core.errors import UserError
from engine.core.paths import is_hf_id

IMAGE = "image"
LANGUAGE = "language"

DEFAULT_IMAGE_NAME = "default"
DEFAULT_LM_NAME = "default-lm"


def read_config(folder: Path) -> dict:
    """A model folder's config.json as a dict.

    Raises:
        UserError: missing, unreadable or not a JSON object.
    """
    cfg_path = folder / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("not a model: config.json is missing", folder) from None
    except ValueError as exc:
        raise UserError(f"config.json is not valid JSON ({exc})", cfg_path) from None
    except OSError as exc:
        raise UserError(f"config.json cannot be read ({exc.strerror or exc})", cfg_path) from None
    if not isinstance(cfg, dict):
        raise UserError("config.json does not hold an object", cfg_path)
    return cfg


def is_hf_image_classifier(cfg: dict) -> bool:
    """A Hugging Face image-classification folder's config (ViT, ConvNeXt...): imported, not opened."""
    archs = cfg.get("architectures") or []
    return isinstance(archs, list) and any(str(a).endswith("ForImageClassification") for a in archs)


def kind_of_config(cfg: dict) -> str | None:
    """IMAGE or LANGUAGE for a parsed config.json, None for neither."""
    if "arch" in cfg and "labels" in cfg:
        return IMAGE
    if "model_type" in cfg and "arch" not in cfg and not is_hf_image_classifier(cfg):
        return LANGUAGE
    return None


def kind_of(spec: str | Path) -> str:
    """IMAGE or LANGUAGE for a model spec: a name, a folder, a .gguf file or a Hugging Face id.

    Raises:
        UserError: the path does not exist, or holds neither kind of model.
    """
    text = str(spec)
    if text == DEFAULT_IMAGE_NAME:
        return IMAGE
    if text == DEFAULT_LM_NAME:
        return LANGUAGE
    path = Path(text).expanduser()
    if path.is_dir():
        cfg = read_config(path)
        kind = kind_of_config(cfg)
        if kind is None and is_hf_image_classifier(cfg):
            raise UserError("a Hugging Face image classifier: import it first (main.py import --weights FOLDER)", path)
        if kind is None:
            raise UserError(
                "config.json describes neither a model bundle nor an mlx-lm language model", path / "config.json"
            )
        return kind
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return LANGUAGE
        raise UserError("not a model: expected a model folder (a bundle or an mlx-lm folder) or a .gguf file", path)
    if is_hf_id(text):
        return LANGUAGE  # a Hugging Face id: fetched on first use
    raise UserError("model not found", path)


def try_kind_of(spec: str | Path) -> str | None:
    """:func:`kind_of`, or None where it would raise (for listings and quiet checks)."""
    try:
        return kind_of(spec)
    except UserError:
        return None


def default_model(kind: str) -> Path:
    """The shipped model of ``kind``."""
    return paths.DEFAULT_MODEL_DIR if kind == IMAGE else paths.DEFAULT_LM_DIR
