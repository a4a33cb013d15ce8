"""State shared by the tabs: the models the user knows about, and app settings.

Nothing here runs MLX: model entries are read from config.json; model cards
arrive from the engine thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from engine import paths
from engine.model_card import ModelCard


@dataclass(frozen=True)
class ModelEntry:
    path: str
    name: str
    recipe: str
    arch: str
    kind: str = "image"  # "image" (a bundle) or "language" (an mlx-lm folder or a .gguf file)

    @property
    def quantized(self) -> bool:
        return self.recipe not in ("fp32", "fp16", "bf16") if self.kind == "language" else self.recipe != "fp32"

    @property
    def display(self) -> str:
        return f"{self.name}  [{self.recipe}]"


def read_entry(path: str | Path) -> ModelEntry | None:
    """A ModelEntry from a bundle's config.json, or None if it is not a bundle."""
    path = Path(path)
    lm = read_lm_entry(path)
    if lm is not None:
        return lm
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    q = cfg.get("quantization") or {}
    recipe = (q.get("recipe") or {}).get("name", "custom") if q else "fp32"
    return ModelEntry(str(path.resolve()), cfg.get("name") or path.name, recipe, cfg.get("arch", "?"))


def read_lm_entry(path: Path) -> ModelEntry | None:
    """A ModelEntry for an mlx-lm folder or a .gguf file, or None."""
    from engine.llm.detect import display_name, lm_recipe_name, read_lm_config

    if path.is_file() and path.suffix.lower() == ".gguf":
        return ModelEntry(str(path.resolve()), path.stem, "gguf", "gguf", "language")
    cfg = read_lm_config(path) if path.is_dir() else None
    if cfg is None:
        return None
    return ModelEntry(
        str(path.resolve()), display_name(path), lm_recipe_name(cfg), str(cfg.get("model_type")), "language"
    )


class AppState(QObject):
    """Known models and their cards; tabs listen to its signals."""

    models_changed = Signal()
    card_ready = Signal(object)  # ModelCard
    results_changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._entries: dict[str, ModelEntry] = {}
        self._cards: dict[str, ModelCard] = {}

    def scan(self) -> None:
        """The default model plus every bundle saved under the user's models folder."""
        for default in (paths.DEFAULT_MODEL_DIR, paths.DEFAULT_LM_DIR):
            entry = read_entry(default)
            if entry:
                self._entries[entry.path] = entry
        for d in sorted(paths.variants_dir().iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                e = read_entry(d)
                if e:
                    self._entries[e.path] = e
        self.models_changed.emit()

    def add(self, path: str | Path) -> ModelEntry | None:
        entry = read_entry(path)
        if entry is not None:
            self._entries[entry.path] = entry
            self._cards.pop(entry.path, None)
            self.models_changed.emit()
        return entry

    def remove(self, path: str) -> None:
        self._entries.pop(path, None)
        self._cards.pop(path, None)
        self.models_changed.emit()

    def entries(self, kind: str | None = None) -> list[ModelEntry]:
        """Known models; ``kind`` ("image" or "language") keeps only that kind."""
        return [e for e in self._entries.values() if kind is None or e.kind == kind]

    def entry(self, path: str) -> ModelEntry | None:
        return self._entries.get(path)

    def float_entries(self) -> list[ModelEntry]:
        return [e for e in self._entries.values() if not e.quantized]

    def set_card(self, card: ModelCard) -> None:
        if card.path:
            self._cards[str(Path(card.path).resolve())] = card
        self.card_ready.emit(card)

    def card(self, path: str) -> ModelCard | None:
        return self._cards.get(path)


def settings() -> QSettings:
    """App settings in an INI file beside the results database (tests redirect both)."""
    return QSettings(str(paths.user_data_dir() / "settings.ini"), QSettings.Format.IniFormat)
