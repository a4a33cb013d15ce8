"""What the service serves: a loaded model behind a small interface the engine thread calls.

``load_backend`` runs on the service's engine thread (it creates MLX arrays).
``ModelInfo`` is an immutable description that any thread may read; for classifiers
it carries the bundle's ``Preprocessing`` so request threads can decode and resize
uploads (PIL and numpy only) while the engine thread runs the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from engine.image.bundle import load_bundle, resolve_model_path
from engine.image.data.preprocess import Preprocessing
from engine.kinds import IMAGE, LANGUAGE, kind_of
from engine.measure.evaluate.classification import Prediction, softmax, top_predictions
from engine.serve.info import CLASSIFIER, LANGUAGE_MODEL, ModelInfo


def model_kind(spec: str) -> str:
    """CLASSIFIER or LANGUAGE_MODEL, as the service names them, for the kind ``spec`` is.

    Raises:
        UserError: the path does not exist or holds neither kind of model.
    """
    return {IMAGE: CLASSIFIER, LANGUAGE: LANGUAGE_MODEL}[kind_of(spec)]


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
    from engine.image.data.images import MAX_PIXELS, decode_image_bytes

    return prep(decode_image_bytes(data, name, max_pixels or MAX_PIXELS))


def now_ms() -> float:
    return time.perf_counter() * 1000.0
