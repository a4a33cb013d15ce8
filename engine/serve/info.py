"""What the service says about the model it serves (any thread may read it)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.image.data.preprocess import Preprocessing

CLASSIFIER = "image-classifier"
LANGUAGE_MODEL = "language-model"


@dataclass(frozen=True)
class ModelInfo:
    """The served model, as /v1/models and /health describe it."""

    id: str
    kind: str
    path: str
    recipe: str
    created: int
    labels: tuple[str, ...] = ()
    preprocessing: Preprocessing | None = None
