"""Run a classifier bundle over a dataset and score it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.core.errors import UserError
from engine.image.bundle import ModelBundle
from engine.image.data.datasets import ImageDataset
from engine.image.data.loader import DecodeAhead, ImageTransform
from engine.measure.evaluate.classification import ClassificationReport, classification_report, softmax


@dataclass(frozen=True)
class EvaluationResult:
    """Scores and per-image predictions of one model on one dataset."""

    model_name: str
    recipe: str
    dataset: str
    report: ClassificationReport
    ids: tuple[str, ...]
    y_true: np.ndarray
    probs: np.ndarray
    skipped: tuple[tuple[str, str], ...]
    elapsed_s: float

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def images_per_s(self) -> float:
        return len(self.ids) / self.elapsed_s if self.elapsed_s > 0 else 0.0


def label_mapping(bundle: ModelBundle, dataset: ImageDataset) -> np.ndarray | None:
    """Index map from dataset classes to model outputs, or None when they line up.

    Raises:
        UserError: the class counts differ, or the names are a different set.
    """
    model_names, data_names = list(bundle.labels), list(dataset.class_names)
    if len(model_names) != len(data_names):
        raise UserError(
            f"class-count mismatch: model '{bundle.name}' has {len(model_names)} classes, "
            f"dataset '{dataset.name}' has {len(data_names)}"
        )
    if model_names == data_names or set(model_names) != set(data_names):
        # Same order, or unrelated names (e.g. '0'..'9' vs folder names): match by position.
        return None
    return np.asarray([model_names.index(c) for c in data_names])


def evaluate_bundle(
    bundle: ModelBundle,
    dataset: ImageDataset,
    batch_size: int = 64,
    limit: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    transform: ImageTransform | None = None,
    prefetch: int = 2,
    workers: int = 1,
    *,
    label: str | None = None,
) -> EvaluationResult:
    """Predict every image of ``dataset`` and compute the classification report.

    Images are decoded on a background thread (``engine.image.data.loader``) while the model
    runs on this one.

    Args:
        transform: optional per-image corruption applied before normalisation.
        prefetch: batches decoded ahead (0: decode synchronously).
        workers: decoding threads.

    Raises:
        UserError: class-count mismatch or no readable image.
        Cancelled: should_stop() turned true between batches.
    """
    mapping = label_mapping(bundle, dataset)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    probs, labels, ids, skipped = [], [], [], list(dataset.skipped)
    t0 = time.perf_counter()
    loader = DecodeAhead(dataset, bundle.preprocessing, batch_size, n, transform, prefetch, workers, should_stop)
    with loader:
        for batch in loader:
            skipped.extend(batch.skipped)
            if len(batch.indices):
                probs.append(softmax(bundle.predict_logits(batch.x).astype(np.float64)))
                labels.append(batch.labels if mapping is None else mapping[batch.labels])
                ids.extend(dataset.identifier(int(i)) for i in batch.indices)
            if progress is not None:
                progress(batch.end / n, f"{label or bundle.name}: {batch.end}/{n} images")
    elapsed = time.perf_counter() - t0
    if not ids:
        raise UserError(f"no readable image in dataset '{dataset.name}'")
    y_true = np.concatenate(labels)
    probs_arr = np.concatenate(probs)
    report = classification_report(y_true, probs_arr.argmax(axis=1), list(bundle.labels))
    return EvaluationResult(
        model_name=bundle.name,
        recipe=bundle.recipe_name,
        dataset=dataset.name,
        report=report,
        ids=tuple(ids),
        y_true=y_true,
        probs=probs_arr,
        skipped=tuple(skipped),
        elapsed_s=elapsed,
    )
