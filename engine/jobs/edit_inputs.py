"""Change what a saved bundle records about its inputs (preprocessing, labels) without touching its weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.core import paths
from engine.core.errors import UserError
from engine.core.fileio import atomic_open
from engine.image.bundle import CONFIG_NAME, read_config, resolve_model_path
from engine.image.data.preprocess import Preprocessing


def update_bundle_inputs(
    spec: str | Path, preprocessing: Preprocessing | None = None, labels: list[str] | None = None
) -> Path:
    """Rewrite config.json with new preprocessing and/or labels, atomically (temp file + rename).

    Raises:
        UserError: not a bundle, the shipped default model, or a label count that
            differs from the model's class count.
    """
    path = resolve_model_path(spec).resolve()
    if path == paths.DEFAULT_MODEL_DIR.resolve():
        raise UserError("the shipped default model is read-only; import or quantize a copy to change it", path)
    cfg = read_config(path)
    if labels is not None:
        labels = [str(s) for s in labels]
        if len(labels) != len(cfg["labels"]):
            raise UserError(f"{len(labels)} labels given but the model has {len(cfg['labels'])} classes", path)
        if any(not s.strip() for s in labels):
            raise UserError("labels must not be empty", path)
        cfg["labels"] = labels
    if preprocessing is not None:
        cfg["preprocessing"] = preprocessing.to_dict()
    with atomic_open(path / CONFIG_NAME, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    return path


@dataclass(frozen=True)
class EditInputsJob:
    """Store new preprocessing/labels in a bundle (the Models tab's editor)."""

    model: str
    preprocessing: Preprocessing | None = None
    labels: tuple[str, ...] | None = None
    title: str = "Save preprocessing"

    def run(self, ctx, ws):
        from engine.image.model_card import model_card

        ctx.progress(0.0, f"updating {self.model}")
        path = update_bundle_inputs(self.model, self.preprocessing, list(self.labels) if self.labels else None)
        ws.forget(path)
        card = model_card(ws.bundle(path))
        ctx.progress(1.0, f"saved {card.name}")
        return card
