"""The in-memory dataset every reader returns, and the checks its arrays pass."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.core.errors import UserError
from engine.image.data.images import load_image
from engine.image.data.preprocess import Preprocessing

# What numpy raises for a truncated or corrupt .npz (a zip of .npy files, maybe deflated).
NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


@dataclass
class ImageDataset:
    """Images with integer labels, held in memory (uint8 arrays) or as file paths.

    Files that fail to decode while iterating are skipped and listed in ``skipped``.
    """

    name: str
    class_names: list[str]
    labels: np.ndarray
    images: np.ndarray | None = None
    paths: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # Group id per item (HAM10000: lesion_id); splits never cut a group.
    groups: np.ndarray | None = None
    split: str = "all"
    # True when the source defines its own train/val/test (MedMNIST, CIFAR).
    native_splits: bool = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray, split: str) -> ImageDataset:
        """The items at ``indices`` (listed skips are kept) as a new dataset named after the split."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageDataset(
            name=self.name if split == "all" else f"{self.name}:{split}",
            class_names=list(self.class_names),
            labels=self.labels[idx],
            images=self.images[idx] if self.images is not None else None,
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            skipped=list(self.skipped),
            groups=self.groups[idx] if self.groups is not None else None,
            split=split,
            native_splits=self.native_splits,
        )

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names))

    def identifier(self, i: int) -> str:
        return self.paths[i] if self.paths is not None else f"{self.name}#{i}"

    def load_uint8(self, i: int, prep: Preprocessing) -> np.ndarray:
        if self.images is not None:
            return prep.fit_array(self.images[i])
        return prep.image_to_uint8(load_image(self.paths[i]))

    def batches(
        self,
        prep: Preprocessing,
        batch_size: int,
        should_stop: Callable[[], bool] | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (x float32 NHWC, labels, dataset indices) batches.

        Raises:
            Cancelled: when should_stop() turns true between batches.
        """
        from engine.image.data.loader import DecodeAhead

        for batch in DecodeAhead(self, prep, batch_size, limit, prefetch=0, should_stop=should_stop):
            self.skipped.extend(batch.skipped)
            if len(batch.indices):
                yield batch.x, batch.labels, batch.indices


def checked_arrays(
    images: np.ndarray, labels: np.ndarray, names: list[str] | None, path: Path | str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validate in-memory images and labels; returns uint8 images, int64 labels, class names.

    Raises:
        UserError: counts differ, pixel values out of 0..255, no images, or labels out of range.
    """
    if images.shape[0] != labels.shape[0]:
        raise UserError(f"{images.shape[0]} images but {labels.shape[0]} labels", path)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
        raise UserError(f"images must be (N, H, W) or (N, H, W, C) with C 1, 3 or 4; found {images.shape}", path)
    if images.dtype != np.uint8:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise UserError(f"images must be uint8 or lie in 0..255, found dtype {images.dtype}", path)
        images = images.astype(np.uint8)
    if images.ndim == 4 and images.shape[-1] == 4:
        images = np.ascontiguousarray(images[..., :3])  # drop alpha
    if len(labels) == 0:
        raise UserError("dataset holds no images", path)
    if names is None:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    if labels.min() < 0 or labels.max() >= len(names):
        raise UserError(f"labels must lie in 0..{len(names) - 1}", path)
    return images, labels, names
