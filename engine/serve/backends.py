"""What the service serves: a loaded model behind a small interface the engine thread calls.

``load_backend`` runs on the service's engine thread (it creates MLX arrays).
``ModelInfo`` is an immutable description that any thread may read; for classifiers
it carries the bundle's ``Preprocessing`` so request threads can decode and resize
uploads (PIL and numpy only) while the engine thread runs the model.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.bundle import load_bundle, resolve_model_path
from engine.data.preprocess import Preprocessing
from engine.errors import UserError
from engine.evaluate.classification import softmax
from engine.jobs import Prediction, top_predictions
from engine.llm.detect import DEFAULT_LM_NAME

CLASSIFIER = "image-classifier"
LANGUAGE_MODEL = "language-model"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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


def model_kind(spec: str) -> str:
    """CLASSIFIER for a model bundle (or 'default'), LANGUAGE_MODEL for an mlx-lm folder or hub id.

    Raises:
        UserError: the path does not exist or holds neither kind of model.
    """
    if spec == "default":
        return CLASSIFIER
    if spec == DEFAULT_LM_NAME:
        return LANGUAGE_MODEL
    path = Path(spec).expanduser()
    if path.is_dir():
        cfg_path = path / "config.json"
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError("not a model: config.json is missing", path) from None
        except (OSError, ValueError) as exc:
            raise UserError(f"config.json cannot be read ({exc})", cfg_path) from None
        if not isinstance(cfg, dict):
            raise UserError("config.json does not hold an object", cfg_path)
        if "arch" in cfg and "labels" in cfg:
            return CLASSIFIER
        if "model_type" in cfg:
            return LANGUAGE_MODEL
        raise UserError("config.json describes neither a model bundle nor an mlx-lm language model", cfg_path)
    if path.exists():
        raise UserError("expected a model directory (a bundle or an mlx-lm folder)", path)
    if _HF_ID.match(spec) and not spec.startswith((".", "~")):
        return LANGUAGE_MODEL  # a Hugging Face id: mlx-lm fetches it on first use
    raise UserError("model not found", path)


def load_backend(spec: str):
    """Load ``spec`` on the calling thread (the service's engine thread)."""
    if model_kind(spec) == CLASSIFIER:
        return ClassifierBackend(spec)
    from engine.serve.lm_backend import LanguageBackend

    return LanguageBackend(spec)


class ClassifierBackend:
    """A model bundle: batches of preprocessed images -> top-k labels."""

    def __init__(self, spec: str):
        self.bundle = load_bundle(spec)
        path = resolve_model_path(spec).resolve()
        self.info = ModelInfo(
            id=self.bundle.name,
            kind=CLASSIFIER,
            path=str(path),
            recipe=self.bundle.recipe_name,
            created=int((path / "config.json").stat().st_mtime),
            labels=tuple(self.bundle.labels),
            preprocessing=self.bundle.preprocessing,
        )

    def classify(self, batch: np.ndarray, top_ks: Sequence[int]) -> list[tuple[Prediction, ...]]:
        """(N, H, W, C) float32 -> for each row, its top_ks[i] predictions."""
        probs = softmax(self.bundle.predict_logits(batch).astype(np.float64))
        return [top_predictions(row, self.bundle.labels, k) for row, k in zip(probs, top_ks, strict=True)]

    def close(self) -> None:
        self.bundle = None


def preprocess_upload(data: bytes, name: str, prep: Preprocessing, max_pixels: int | None = None) -> np.ndarray:
    """Decode an uploaded image defensively and make it the model's (H, W, C) float32 input.

    Runs on request threads: PIL and numpy only, never MLX.
    """
    from engine.data.images import MAX_PIXELS, decode_image_bytes

    return prep(decode_image_bytes(data, name, max_pixels or MAX_PIXELS))


def now_ms() -> float:
    return time.perf_counter() * 1000.0
