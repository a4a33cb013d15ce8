"""The language-model kind: mlx-lm folders, GGUF files and Hugging Face ids, through engine.llm."""

from __future__ import annotations

from pathlib import Path

from engine.kinds.base import Listing, MethodOffer, Progress
from engine.kinds.detect import LANGUAGE


class LanguageKind:
    name = LANGUAGE
    label = "language model"

    def resolve(self, spec: str | Path) -> str:
        from engine.llm.detect import resolve_lm_spec

        text = resolve_lm_spec(spec)
        p = Path(text)
        return str(p.resolve()) if p.exists() else text

    def stamp(self, key: str) -> float:
        p = Path(key)
        if not p.exists():
            return 0.0  # a Hugging Face id: the hub cache does not change under us
        cfg = p / "config.json" if p.is_dir() else p
        return cfg.stat().st_mtime if cfg.exists() else -1.0

    def load(self, key: str, progress: Progress | None = None):
        from engine.llm.loader import load_language_model

        return load_language_model(key, progress)

    def card(self, model):
        return model.card

    def listing(self, path: Path) -> Listing | None:
        from engine.llm.detect import display_name, lm_recipe_name, read_lm_config

        if path.is_file() and path.suffix.lower() == ".gguf":
            return Listing(str(path.resolve()), path.stem, "gguf", "gguf", LANGUAGE)
        cfg = read_lm_config(path) if path.is_dir() else None
        if cfg is None:
            return None
        parent = (cfg.get("mqs") or {}).get("parent") if isinstance(cfg.get("mqs"), dict) else None
        parent = str(Path(parent).resolve()) if parent and Path(parent).exists() else parent
        return Listing(
            str(path.resolve()), display_name(path), lm_recipe_name(cfg), str(cfg.get("model_type")), LANGUAGE, parent
        )

    def recipes(self) -> tuple[str, ...]:
        from engine.image.quant.recipes import format_names
        from engine.llm.quantize import MIXED_RECIPES

        return (*format_names(), *MIXED_RECIPES)

    def methods(self) -> MethodOffer:
        from engine.llm.methods import DEFAULT_SAMPLES, DWQ_BATCH_SIZE, DWQ_STEPS, LM_METHOD_HELP

        hint = "calibration text: any UTF-8 text file, cut into chunks of 256 tokens"
        offer = (("rtn", "round to nearest (no calibration)"), *LM_METHOD_HELP.items())
        auto = f"auto: {DEFAULT_SAMPLES} chunks for gptq/awq, {DWQ_STEPS * DWQ_BATCH_SIZE} for dwq (one per step's row)"
        return MethodOffer(offer, hint, "text file (required)", True, 0, "chunks", auto)
