"""State shared by the tabs: the models the user knows about, and app settings.

Nothing here runs MLX: model entries are read from config.json; model cards
arrive from the engine thread.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from engine.core import paths
from engine.image.model_card import ModelCard


@dataclass(frozen=True)
class ModelEntry:
    path: str
    name: str
    recipe: str
    arch: str
    kind: str = "image"  # "image" (a bundle) or "language" (an mlx-lm folder or a .gguf file)
    where: str = ""  # set by AppState when another entry would look the same: the folder it lies in
    parent: str | None = None  # the float model a variant was made from

    @property
    def quantized(self) -> bool:
        return self.recipe not in ("fp32", "fp16", "bf16") if self.kind == "language" else self.recipe != "fp32"

    @property
    def display(self) -> str:
        text = f"{self.name}  [{self.recipe}]"
        return f"{text}  ({self.where})" if self.where else text


def read_entry(path: str | Path) -> ModelEntry | None:
    """A ModelEntry for a model of any kind (the kind decided by engine.kinds), or None."""
    from engine import kinds

    found = kinds.listing(path)
    if found is None:
        return None
    return ModelEntry(found.path, found.name, found.recipe, found.arch, found.kind, parent=found.parent)


def _where(path: str) -> str:
    """The shipped model, the user's models, a demo or sweep folder: the folder a model lies in."""
    p = Path(path)
    if p.resolve() in (paths.DEFAULT_MODEL_DIR.resolve(), paths.DEFAULT_LM_DIR.resolve()):
        return "shipped"
    if p.parent.resolve() == paths.variants_dir().resolve():
        return "my models"
    return str(Path(*p.parts[-3:-1])) if len(p.parts) > 2 else str(p.parent)


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
        self._tell_apart()
        self.models_changed.emit()

    def add(self, path: str | Path) -> ModelEntry | None:
        entry = read_entry(path)
        if entry is not None:
            self._entries[entry.path] = entry
            self._cards.pop(entry.path, None)
            self._tell_apart()
            self.models_changed.emit()
        return self._entries.get(entry.path) if entry is not None else None

    def remove(self, path: str) -> None:
        self._entries.pop(path, None)
        self._cards.pop(path, None)
        self._tell_apart()
        self.models_changed.emit()

    def _tell_apart(self) -> None:
        """Entries that would show the same name and recipe also show where they lie, in every list."""
        groups: dict[str, list[ModelEntry]] = {}
        for e in self._entries.values():
            groups.setdefault(f"{e.name}  [{e.recipe}]", []).append(e)
        for same in groups.values():
            for e in same:
                where = _where(e.path) if len(same) > 1 else ""
                if e.where != where:
                    self._entries[e.path] = replace(e, where=where)

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
