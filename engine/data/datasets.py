"""Labelled image datasets: the shipped MNIST split, .npz arrays and class folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import paths
from engine.data.images import IMAGE_SUFFIXES, load_image
from engine.data.preprocess import Preprocessing
from engine.errors import Cancelled, UserError

BUILTIN = {"default": paths.DEFAULT_DATA, "default-val": paths.DEFAULT_VAL_DATA}


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

    def __len__(self) -> int:
        return int(self.labels.shape[0])

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
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled()
            idx, arrays = [], []
            for i in range(start, min(start + batch_size, n)):
                try:
                    arrays.append(self.load_uint8(i, prep))
                    idx.append(i)
                except UserError as exc:
                    self.skipped.append((self.identifier(i), str(exc)))
            if not idx:
                continue
            idx = np.asarray(idx)
            yield prep.normalize(np.stack(arrays)), self.labels[idx], idx


def open_dataset(spec: str | Path) -> ImageDataset:
    """Open a dataset by name or path.

    Args:
        spec: "default" (the shipped MNIST held-out split), "default-val" (its
            validation split), an ``.npz`` file with ``images``/``labels`` (or
            ``x``/``y``) and optional ``class_names``, or a folder with one
            subfolder of images per class.

    Raises:
        UserError: the path is missing, empty or not a dataset.
    """
    key = str(spec)
    path = BUILTIN.get(key, Path(key).expanduser())
    if not path.exists():
        raise UserError("dataset not found (give a folder of class subfolders, an .npz file, or 'default')", path)
    if path.is_dir():
        return _open_folder(path)
    if path.suffix.lower() == ".npz":
        return _open_npz(path, name=key if key in BUILTIN else path.name)
    raise UserError("not a dataset: expected a folder of class subfolders or an .npz file", path)


def _open_npz(path: Path, name: str) -> ImageDataset:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            img_key = next((k for k in ("images", "x", "x_test", "test_images") if k in keys), None)
            lab_key = next((k for k in ("labels", "y", "y_test", "test_labels") if k in keys), None)
            if img_key is None or lab_key is None:
                raise UserError(f"npz needs 'images' and 'labels' arrays, found {sorted(keys)}", path)
            images = np.asarray(data[img_key])
            labels = np.asarray(data[lab_key]).reshape(-1).astype(np.int64)
            names = [str(c) for c in data["class_names"]] if "class_names" in keys else None
    except UserError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"cannot read npz dataset ({exc})", path) from None
    if images.shape[0] != labels.shape[0]:
        raise UserError(f"{images.shape[0]} images but {labels.shape[0]} labels", path)
    if images.dtype != np.uint8:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise UserError(f"images must be uint8 or lie in 0..255, found dtype {images.dtype}", path)
        images = images.astype(np.uint8)
    if len(labels) == 0:
        raise UserError("dataset holds no images", path)
    if names is None:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    if labels.min() < 0 or labels.max() >= len(names):
        raise UserError(f"labels must lie in 0..{len(names) - 1}", path)
    return ImageDataset(name=name, class_names=names, labels=labels, images=images)


def _open_folder(path: Path) -> ImageDataset:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError("folder has no class subfolders", path)
    files, labels = [], []
    for ci, cname in enumerate(classes):
        for f in sorted((path / cname).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."):
                files.append(str(f))
                labels.append(ci)
    if not files:
        raise UserError("no image files found in the class subfolders", path)
    return ImageDataset(name=path.name, class_names=classes, labels=np.asarray(labels, dtype=np.int64), paths=files)
