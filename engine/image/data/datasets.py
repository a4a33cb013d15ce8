"""Labelled image datasets: the shipped MNIST split, .npz arrays, class folders and the
layouts of engine.image.data.sources (HAM10000, MedMNIST, CIFAR batches, filename patterns).

``open_dataset`` recognises the layout, then picks a split: the file's own split where it
has one (MedMNIST, CIFAR), else a stratified, seeded split (grouped by lesion for HAM10000).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.core import paths
from engine.core.errors import UserError
from engine.image.data.dataset import NPZ_ERRORS, ImageDataset, checked_arrays
from engine.image.data.images import IMAGE_SUFFIXES
from engine.image.data.splits import DEFAULT_FRACTIONS, SPLITS, stratified_split

BUILTIN = {"default": paths.DEFAULT_DATA, "default-val": paths.DEFAULT_VAL_DATA}


def open_dataset(
    spec: str | Path,
    split: str | None = None,
    seed: int = 0,
    label_pattern: str | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> ImageDataset:
    """Open a dataset by name or path, then select a split.

    Args:
        spec: "default" (the shipped MNIST held-out split), "default-val" (its
            validation split), an ``.npz`` file (``images``/``labels`` or MedMNIST's
            ``train_images``/``val_images``/``test_images`` + ``*_labels``), a HAM10000
            metadata CSV or its folder, a CIFAR-10/100 python batch folder or
            ``cifar-*-python.tar.gz``, a folder with one subfolder of images per class,
            or (with ``label_pattern``) a flat folder whose file names carry the label.
        split: "train", "val", "test" or "all". None: the file's test split where it has
            its own splits (MedMNIST, CIFAR), else everything.
        seed: seed of the stratified split (sets without their own splits).
        label_pattern: a regular expression with a named group ``label``, searched in
            each file name of a flat folder.
        fractions: (train, val, test) shares of the stratified split.

    Raises:
        UserError: the path is missing, empty, not a dataset, or the split is unknown.
    """
    from engine.image.data import sources

    if split is not None and split not in (*SPLITS, "all"):
        raise UserError(f"unknown split '{split}' (use train, val, test or all)")
    key = str(spec)
    path = BUILTIN.get(key, Path(key).expanduser())
    if not path.exists():
        raise UserError(
            "dataset not found (give a folder of class subfolders, an .npz file, a HAM10000 metadata CSV, "
            "a CIFAR batch folder, or 'default')",
            path,
        )
    if label_pattern is not None:
        if not path.is_dir():
            raise UserError("a label pattern needs a folder of image files", path)
        dataset = sources.open_pattern_folder(path, label_pattern)
    elif path.is_dir():
        dataset = sources.open_directory(path, split, seed, fractions)
        if dataset is None:
            dataset = _open_folder(path)
    elif path.suffix.lower() == ".npz":
        dataset = sources.open_split_npz(path, split, seed, fractions)
        if dataset is None:
            dataset = _open_npz(path, name=key if key in BUILTIN else path.name)
    else:
        dataset = sources.open_file(path, split, seed, fractions)
        if dataset is None:
            raise UserError(
                "not a dataset: expected a folder, an .npz file, a HAM10000 metadata CSV or CIFAR batches", path
            )
    return select_split(dataset, split, seed, fractions)


def select_split(
    dataset: ImageDataset,
    split: str | None,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> ImageDataset:
    """A stratified (and grouped, where the dataset has groups) seeded split of ``dataset``.

    Datasets that came with their own splits are returned as they are.
    """
    if split in (None, "all") or dataset.native_splits:
        return dataset
    parts = stratified_split(dataset.labels, fractions, seed, dataset.groups)
    chosen = dataset.subset(parts[split], split)
    if len(chosen) == 0:
        raise UserError(f"the {split} split of '{dataset.name}' is empty; use other --split fractions or more data")
    return chosen


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
    except NPZ_ERRORS as exc:
        raise UserError(f"cannot read npz dataset ({exc})", path) from None
    images, labels, names = checked_arrays(images, labels, names, path)
    return ImageDataset(name=name, class_names=names, labels=labels, images=images)


def _open_folder(path: Path) -> ImageDataset:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError("folder has no class subfolders", path)
    files, labels, empty = [], [], []
    for ci, cname in enumerate(classes):
        found = [
            f
            for f in sorted((path / cname).rglob("*"))
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
        ]
        files += [str(f) for f in found]
        labels += [ci] * len(found)
        if not found:
            empty.append(cname)
    if not files:
        raise UserError("no image files found in the class subfolders", path)
    if empty:
        # Almost always a mistake, and it silently changes the class list the model is checked against.
        more = f" (nor do {', '.join(map(repr, empty[1:]))})" if len(empty) > 1 else ""
        raise UserError(f"class folder holds no images{more}; add images or remove it", path / empty[0])
    return ImageDataset(name=path.name, class_names=classes, labels=np.asarray(labels, dtype=np.int64), paths=files)
