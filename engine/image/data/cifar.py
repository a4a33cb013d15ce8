"""CIFAR-10 and CIFAR-100 "python version" batches, read without executing pickled code.

``cifar-10-batches-py/`` holds ``data_batch_1..5`` (train), ``test_batch`` and
``batches.meta``; ``cifar-100-python/`` holds ``train``, ``test`` and ``meta``. Each is a
Python 2 pickle of a dict with a (N, 3072) uint8 ``data`` array (channel-major 32x32)
and a label list. The files are read through ``engine.image.data.safe_pickle`` and may also be
read straight out of the downloaded ``.tar.gz``.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from engine.core.errors import UserError
from engine.image.data.dataset import ImageDataset, checked_arrays
from engine.image.data.safe_pickle import safe_load
from engine.image.data.splits import stratified_split

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN, "test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
SUBDIRS = ("cifar-10-batches-py", "cifar-100-python")
MAX_MEMBER_BYTES = 512 * 1024 * 1024


def is_batch_file(path: Path) -> bool:
    return path.name in CIFAR10_FILES


def find_batches_dir(folder: Path) -> Path | None:
    """``folder`` itself or its cifar-10-batches-py / cifar-100-python child, if it holds batches."""
    for candidate in (folder, *(folder / s for s in SUBDIRS)):
        if (candidate / "batches.meta").is_file() or (candidate / "test_batch").is_file():
            return candidate
        if (candidate / "meta").is_file() and (candidate / "test").is_file():
            return candidate
    return None


class _Reader:
    """Reads named batch files from a folder or from a tar archive (kept open), by base name."""

    def __init__(self, source: Path):
        self.source = source
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if source.is_file():
            try:
                self._tar = tarfile.open(source)
                self._members = {Path(m.name).name: m for m in self._tar.getmembers() if m.isfile()}
            except (tarfile.TarError, OSError, EOFError) as exc:
                self.close()
                raise UserError(f"cannot read the archive ({exc})", source) from None

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def names(self) -> set[str]:
        if self.source.is_file():
            return set(self._members)
        return {p.name for p in self.source.iterdir() if p.is_file()}

    def load(self, name: str) -> dict:
        if self._tar is not None:
            where = f"{self.source}:{name}"
            member = self._members.get(name)
            if member is None:
                raise UserError(f"archive has no '{name}'", self.source)
            if member.size > MAX_MEMBER_BYTES:
                raise UserError(f"'{name}' is {member.size:,} bytes, too large for a CIFAR batch", self.source)
            try:
                f = self._tar.extractfile(member)
                data = f.read() if f is not None else b""
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise UserError(f"cannot read '{name}' from the archive ({exc})", self.source) from None
        else:
            path = self.source / name
            where = str(path)
            if not path.is_file():
                raise UserError("batch file is missing", path)
            data = path.read_bytes()
        obj = safe_load(data, where)
        if not isinstance(obj, dict):
            raise UserError(f"expected a dict in the batch, found {type(obj).__name__}", where)
        return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _text(values, where: str) -> list[str]:
    if not isinstance(values, (list, tuple)):
        raise UserError("label names are not a list", where)
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def _batch_arrays(batch: dict, label_key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    data = batch.get("data")
    labels = batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise UserError(f"batch 'data' must be a (N, 3072) uint8 array, found {type(data).__name__} {shape}", where)
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"batch '{label_key}' is not a list of integers", where) from None
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def open_cifar(source: Path, split: str | None, seed: int, fractions) -> ImageDataset:
    """CIFAR-10/100 from a batch folder or a ``.tar.gz``.

    ``split`` None or "test": the test batch; "train": the training batches less a
    stratified, seeded validation share (fractions[1] / (fractions[0] + fractions[1]));
    "val": that share; "all": everything.

    Raises:
        UserError: files missing, not plain data pickles, or malformed arrays.
    """
    with _Reader(source) as reader:
        names = reader.names()
        if "batches.meta" in names or "test_batch" in names:
            train_files = tuple(f for f in CIFAR10_TRAIN if f in names)
            test_files, meta_file, label_key, names_key = ("test_batch",), "batches.meta", "labels", "label_names"
        elif "meta" in names and "test" in names:
            train_files, test_files = ("train",), ("test",)
            meta_file, label_key, names_key = "meta", "fine_labels", "fine_label_names"
        else:
            raise UserError("no CIFAR batches here (expected batches.meta, data_batch_N and test_batch)", source)
        split = split or "test"
        wanted = {"test": test_files, "train": train_files, "val": train_files, "all": train_files + test_files}[split]
        if not wanted:
            raise UserError(f"no batch files for the {split} split", source)
        class_names = None
        if meta_file in names:
            meta = reader.load(meta_file)
            if names_key in meta:
                class_names = _text(meta[names_key], f"{source}:{meta_file}")
        images, labels = [], []
        for f in wanted:
            img, lab = _batch_arrays(reader.load(f), label_key, f"{source}:{f}")
            images.append(img)
            labels.append(lab)
    image_arr = np.concatenate(images)
    label_arr = np.concatenate(labels)
    if split in ("train", "val"):
        total = fractions[0] + fractions[1]
        if total <= 0:
            raise UserError("train and val fractions are both zero")
        share = fractions[1] / total
        parts = stratified_split(label_arr, (1.0 - share, share, 0.0), seed)
        keep = parts["train" if split == "train" else "val"]
        image_arr, label_arr = image_arr[keep], label_arr[keep]
    image_arr, label_arr, class_names = checked_arrays(image_arr, label_arr, class_names, source)
    base = source.name.removesuffix(".tar.gz").removesuffix(".tgz")
    return ImageDataset(
        name=base if split == "all" else f"{base}:{split}",
        class_names=class_names,
        labels=label_arr,
        images=image_arr,
        split=split,
        native_splits=True,
    )
