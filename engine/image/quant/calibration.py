"""Calibration data and output comparisons shared by sensitivity, budget search and activation simulation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.data.datasets import open_dataset
from engine.image.evaluation import label_mapping

DEFAULT_CALIBRATION = "default-val"


@dataclass(frozen=True)
class LabelledImages:
    """Preprocessed float32 NHWC images, with labels in the model's class order where known.

    ``y`` is None for calibration images without (matching) labels: whatever only compares a
    model with its float self needs none.
    """

    name: str
    x: np.ndarray
    y: np.ndarray | None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, n: int, seed: int = 0) -> LabelledImages:
        """``n`` images drawn without replacement (all of them when n >= len)."""
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return LabelledImages(f"{self.name}[{n}]", self.x[idx], None if self.y is None else self.y[idx])


def load_images(
    bundle,
    data: str,
    limit: int | None = None,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> LabelledImages:
    """Up to ``limit`` images of a dataset (a seeded random subset when it holds more), preprocessed for ``bundle``.

    Raises:
        UserError: unreadable dataset, class-count mismatch, or no readable image.
    """
    dataset = open_dataset(data)
    mapping = label_mapping(bundle, dataset)
    x, kept = load_images_of(dataset, bundle.preprocessing, limit, seed, should_stop)
    y = dataset.labels[kept].astype(np.int64)
    if mapping is not None:
        y = mapping[y]
    name = str(data) if str(data) in ("default", "default-val") else dataset.name
    return LabelledImages(name, x, y)


def load_calibration(
    bundle,
    data: str,
    limit: int | None = None,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> LabelledImages:
    """Calibration images from any source; labels kept only where they match the model's classes.

    ``data`` may be anything :func:`load_images` reads, or any folder of images (flat, nested,
    one class subfolder or a class count other than the model's) or an ``.npz`` holding an image
    array without labels. Calibration never needs labels; they are kept for methods that report
    an accuracy.

    Raises:
        UserError: no readable image, or not a folder/.npz/dataset at all.
    """
    try:
        return load_images(bundle, data, limit, seed, should_stop)
    except UserError as labelled_error:
        dataset = _unlabelled_dataset(data, labelled_error)
    images, _ = load_images_of(dataset, bundle.preprocessing, limit, seed, should_stop)
    return LabelledImages(dataset.name, images, None)


def _unlabelled_dataset(data: str, labelled_error: UserError):
    from pathlib import Path

    from engine.image.data.datasets import BUILTIN, NPZ_ERRORS, ImageDataset, checked_arrays
    from engine.image.data.images import image_files

    path = BUILTIN.get(str(data), Path(str(data)).expanduser())
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise UserError("no image files in this folder or below it", path)
        return ImageDataset(path.name, ["?"], np.zeros(len(files), np.int64), paths=[str(f) for f in files])
    if path.is_file() and path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                key = next(
                    (k for k in ("images", "x", "x_train", "train_images", "x_test", "test_images") if k in z.files),
                    None,
                )
                if key is None:
                    key = next((k for k in z.files if z[k].ndim in (3, 4)), None)
                if key is None:
                    raise UserError(f"npz holds no image array (N, H, W[, C]); found {sorted(z.files)}", path)
                images = np.asarray(z[key])
        except NPZ_ERRORS as exc:
            raise UserError(f"cannot read npz ({exc})", path) from None
        images, labels, _ = checked_arrays(images, np.zeros(images.shape[0], np.int64), ["?"], path)
        return ImageDataset(path.name, ["?"], labels, images=images)
    raise labelled_error


def load_images_of(
    dataset, prep, limit: int | None = None, seed: int = 0, should_stop: Callable[[], bool] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` preprocessed images of ``dataset`` (a seeded subset) and the indices they came from.

    Unreadable files are skipped (listed in ``dataset.skipped``).

    Raises:
        UserError: no readable image.
    """
    n = len(dataset)
    idx = np.arange(n)
    if limit is not None and limit < n:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    arrays, kept = [], []
    for k, i in enumerate(idx):
        if should_stop is not None and k % 64 == 0 and should_stop():
            raise Cancelled()
        try:
            arrays.append(dataset.load_uint8(int(i), prep))
        except UserError as exc:
            dataset.skipped.append((dataset.identifier(int(i)), str(exc)))
            continue
        kept.append(int(i))
    if not arrays:
        raise UserError(f"no readable image in dataset '{dataset.name}'")
    return prep.normalize(np.stack(arrays)), np.asarray(kept, dtype=np.int64)


def logits_of(
    model: nn.Module,
    x: np.ndarray,
    batch_size: int = 128,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """float32 logits of ``model`` on ``x``, computed in batches (float32 activations)."""
    out = []
    for start in range(0, x.shape[0], batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled()
        y = model(mx.array(x[start : start + batch_size]))
        mx.eval(y)
        out.append(np.array(y.astype(mx.float32)))
    return np.concatenate(out)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class OutputChange:
    """How far a model's outputs moved from a reference's on the same images."""

    kl: float  # mean KL(reference || model) over images, in nats
    flip_rate: float  # share of images whose top-1 class changed
    accuracy: float | None  # top-1 accuracy of the model, when labels are known

    @staticmethod
    def between(ref_logits: np.ndarray, logits: np.ndarray, labels: np.ndarray | None = None) -> OutputChange:
        lp, lq = log_softmax(ref_logits), log_softmax(logits)
        kl = float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))
        flips = float(np.mean(ref_logits.argmax(1) != logits.argmax(1)))
        acc = None if labels is None else float(np.mean(logits.argmax(1) == labels))
        return OutputChange(max(kl, 0.0), flips, acc)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(1) == labels))
