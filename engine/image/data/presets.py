"""Named preprocessing presets and the ``--preprocess``/``--input-size``/``--labels`` spellings."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from engine.core.errors import UserError
from engine.image.data.preprocess import Preprocessing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What each preset changes; everything else (size, resize policy...) stays as it was.
PRESETS: dict[str, dict] = {
    "imagenet": {"scale": "unit", "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "channel_order": "RGB"},
    "inception": {"scale": "symmetric", "mean": None, "std": None, "channel_order": "RGB"},  # [-1, 1]
    "unit": {"scale": "unit", "mean": None, "std": None},  # [0, 1]
    "raw": {"scale": "raw", "mean": None, "std": None},  # [0, 255], e.g. Keras models that rescale inside
    # keras.applications ResNet50/VGG "caffe" mode: BGR, [0, 255] minus the ImageNet means.
    "caffe": {"scale": "raw", "mean": (103.939, 116.779, 123.68), "std": None, "channel_order": "BGR"},
}
PRESET_ALIASES = {"torch": "imagenet", "tf": "inception", "symmetric": "inception", "none": "raw"}

# key=value overrides accepted after the preset name.
_KEYS = {
    "size": "input_size",
    "input_size": "input_size",
    "resize": "resize",
    "crop": "crop_fraction",
    "crop_fraction": "crop_fraction",
    "interpolation": "interpolation",
    "scale": "scale",
    "mean": "mean",
    "std": "std",
    "channels": "channels",
    "order": "channel_order",
    "channel_order": "channel_order",
}


def parse_size(text: str) -> tuple[int, int]:
    """'224' -> (224, 224); '224x192' (height x width) -> (224, 192)."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"input size '{text}' is not N or HxW") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise UserError(f"input size '{text}' is not N or HxW with positive numbers")
    return dims


def _floats(text: str) -> tuple[float, ...] | None:
    if text.lower() in ("", "none"):
        return None
    try:
        return tuple(float(v) for v in text.replace(":", "/").split("/"))
    except ValueError:
        raise UserError(f"'{text}' is not a list of numbers (use 0.5/0.5/0.5)") from None


def apply_spec(base: Preprocessing, spec: str | None = None, input_size: str | tuple | None = None) -> Preprocessing:
    """``base`` changed by a spec such as ``inception`` or ``imagenet,size=160,interpolation=bicubic``.

    Raises:
        UserError: an unknown preset or key, or a value the Preprocessing rejects.
    """
    values = base.to_dict()
    for i, part in enumerate(p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        if "=" not in part:
            name = PRESET_ALIASES.get(part.lower(), part.lower())
            if i != 0 or name not in PRESETS:
                raise UserError(f"unknown preprocessing preset '{part}' (use {', '.join(PRESETS)})")
            values.update(PRESETS[name])
            continue
        key, value = (s.strip() for s in part.split("=", 1))
        field = _KEYS.get(key.lower())
        if field is None:
            raise UserError(f"unknown preprocessing key '{key}' (use {', '.join(sorted(set(_KEYS)))})")
        if field == "input_size":
            values[field] = parse_size(value)
        elif field in ("mean", "std"):
            values[field] = _floats(value)
        elif field == "crop_fraction":
            try:
                values[field] = float(value)
            except ValueError:
                raise UserError(f"crop '{value}' is not a number") from None
        elif field == "channels":
            values[field] = int(value) if value.isdigit() else value
        elif field == "channel_order":
            values[field] = value.upper()
        else:
            values[field] = value.lower()
    if input_size is not None:
        values["input_size"] = parse_size(input_size) if isinstance(input_size, str) else tuple(input_size)
    prep = Preprocessing.from_dict(values)
    if prep.mean is not None and prep.channels == 1 and len(prep.mean) == 3:
        prep = replace(prep, mean=None, std=None)
    return prep


def describe(prep: Preprocessing) -> str:
    """A one-line summary, e.g. '224×224 RGB, shorter_side_crop 0.875 bilinear, [0,1] mean/std'."""
    scale = {"unit": "[0,1]", "symmetric": "[-1,1]", "raw": "[0,255]"}[prep.scale]
    norm = " mean/std" if prep.mean is not None or prep.std is not None else ""
    crop = f" {prep.crop_fraction:g}" if prep.resize == "shorter_side_crop" else ""
    order = "gray" if prep.channels == 1 else prep.channel_order
    return f"{prep.input_size[0]}×{prep.input_size[1]} {order}, {prep.resize}{crop} {prep.interpolation}, {scale}{norm}"


def read_labels(spec: str | None) -> list[str] | None:
    """Class names from a comma list, or from a file: one per line, a JSON list, or a JSON {index: name} map.

    Raises:
        UserError: an unreadable or empty file, or duplicate indices.
    """
    if spec is None or not str(spec).strip():
        return None
    path = Path(str(spec)).expanduser()
    looks_like_file = path.suffix.lower() in (".txt", ".json", ".csv", ".names", ".labels") or path.exists()
    if not looks_like_file:
        return [s.strip() for s in str(spec).split(",")]
    if not path.is_file():
        raise UserError("labels file not found", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read labels file ({exc})", path) from None
    labels: list[str]
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"labels file is not valid JSON ({exc})", path) from None
        if isinstance(obj, dict):  # {"0": "cat"} or Keras/ImageNet {"0": ["n01440764", "tench"]}
            try:
                items = sorted((int(k), v[-1] if isinstance(v, list) else v) for k, v in obj.items())
            except ValueError:
                raise UserError("labels JSON object must map class indices to names", path) from None
            if [i for i, _ in items] != list(range(len(items))):
                raise UserError("labels JSON indices must be 0..N-1 without gaps", path)
            labels = [str(v) for _, v in items]
        elif isinstance(obj, list):
            labels = [str(v) for v in obj]
        else:
            raise UserError("labels JSON must be a list or an {index: name} object", path)
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise UserError("labels file holds no names", path)
    return labels
