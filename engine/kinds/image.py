"""The image-classifier kind: model bundles (config.json + model.safetensors)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.kinds.base import Listing, MethodOffer, Progress
from engine.kinds.detect import IMAGE, kind_of_config


class ImageKind:
    name = IMAGE
    label = "image classifier"

    def resolve(self, spec: str | Path) -> str:
        from engine.image.bundle import resolve_model_path

        return str(resolve_model_path(spec).resolve())

    def stamp(self, key: str) -> float:
        cfg = Path(key) / "config.json"
        return cfg.stat().st_mtime if cfg.exists() else -1.0

    def load(self, key: str, progress: Progress | None = None):
        from engine.image.bundle import load_bundle

        if progress:
            progress(0.0, f"loading {Path(key).name}")
        return load_bundle(key)

    def card(self, model):
        from engine.image.model_card import model_card

        return model_card(model)

    def listing(self, path: Path) -> Listing | None:
        try:
            cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(cfg, dict) or kind_of_config(cfg) != IMAGE:
            return None
        q = cfg.get("quantization") or {}
        recipe = (q.get("recipe") or {}).get("name", "custom") if q else "fp32"
        parent = (cfg.get("source") or {}).get("parent") if isinstance(cfg.get("source"), dict) else None
        name = cfg.get("name") or path.name
        return Listing(str(path.resolve()), name, recipe, cfg.get("arch", "?"), IMAGE, _resolved(parent))

    def recipes(self) -> tuple[str, ...]:
        from engine.image.quant.recipes import builtin_names

        return tuple(builtin_names())

    def methods(self) -> MethodOffer:
        from engine.image.quant.calibration import DEFAULT_CALIBRATION
        from engine.image.quant.methods.names import DEFAULT_CALIB_SIZE, METHODS

        hint = "calibration images: any folder or .npz of images (labels optional) or a dataset name"
        return MethodOffer(tuple(METHODS.items()), hint, DEFAULT_CALIBRATION, False, DEFAULT_CALIB_SIZE, "images")


def _resolved(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None
