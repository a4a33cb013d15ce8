"""Dataset layouts beyond class folders: MedMNIST .npz, HAM10000, CIFAR batches, filename patterns.

Each opener returns an ``ImageDataset`` or None when the path is not its layout, so
``open_dataset`` can try them in turn and fall back to class folders.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from engine.core.errors import UserError
from engine.image.data.dataset import NPZ_ERRORS, ImageDataset, checked_arrays
from engine.image.data.images import image_files
from engine.image.data.splits import SPLITS

# -- dispatch -----------------------------------------------------------------------------


def open_directory(path: Path, split: str | None, seed: int, fractions) -> ImageDataset | None:
    """CIFAR batch folders and HAM10000 folders; None for anything else."""
    from engine.image.data import cifar, ham10000

    cifar_dir = cifar.find_batches_dir(path)
    if cifar_dir is not None:
        return cifar.open_cifar(cifar_dir, split, seed, fractions)
    csv_path = ham10000.find_metadata(path)
    if csv_path is not None:
        return ham10000.open_ham10000(csv_path, path)
    return None


def open_file(path: Path, split: str | None, seed: int, fractions) -> ImageDataset | None:
    """A HAM10000 metadata CSV, a CIFAR archive or batch file; None for anything else."""
    from engine.image.data import cifar, ham10000

    name = path.name.lower()
    if name.endswith(".csv"):
        return ham10000.open_ham10000(path, path.parent)
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return cifar.open_cifar(path, split, seed, fractions)
    if cifar.is_batch_file(path):
        return cifar.open_cifar(path.parent, split, seed, fractions)
    return None


# -- MedMNIST .npz --------------------------------------------------------------------------


def _label_vector(labels: np.ndarray, key: str, path: Path) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise UserError(
            f"'{key}' has shape {labels.shape}: multi-label targets (e.g. ChestMNIST) are not supported; "
            "give one class per image",
            path,
        )
    if labels.ndim > 2:
        raise UserError(f"'{key}' has shape {labels.shape}; expected (N,) or (N, 1)", path)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise UserError(f"'{key}' holds non-integer labels", path)
    return labels.reshape(-1).astype(np.int64)


def open_split_npz(path: Path, split: str | None, seed: int, fractions) -> ImageDataset | None:
    """A MedMNIST-style .npz: ``{train,val,test}_images`` with ``{train,val,test}_labels``.

    Any 2D MedMNIST set at any size (28, 64, 128, 224), grayscale (N, H, W) or RGB
    (N, H, W, 3); labels (N,) or (N, 1). Multi-label (ChestMNIST) and 3D volumes are
    refused with a message. ``split`` None means test; "all" joins the three. Class names
    come from an optional ``class_names`` array, else "0".."K-1".
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            present = [s for s in SPLITS if f"{s}_images" in keys and f"{s}_labels" in keys]
            if not present or (present == ["test"] and ("images" in keys or "x" in keys)):
                return None
            wanted = present if split == "all" else [split or "test"]
            missing = [s for s in wanted if s not in present]
            if missing:
                raise UserError(f"npz has no '{missing[0]}' split (it has {', '.join(present)})", path)
            # Class count over every split, so a split lacking a class keeps the full label set.
            all_labels = [_label_vector(data[f"{s}_labels"], f"{s}_labels", path) for s in present]
            names = [str(c) for c in data["class_names"]] if "class_names" in keys else None
            images = [np.asarray(data[f"{s}_images"]) for s in wanted]
            labels = [all_labels[present.index(s)] for s in wanted]
    except UserError:
        raise
    except NPZ_ERRORS as exc:
        raise UserError(f"cannot read npz dataset ({exc})", path) from None
    for s, img in zip(wanted, images, strict=True):
        if img.ndim == 4 and img.shape[-1] not in (1, 3):
            raise UserError(f"'{s}_images' has shape {img.shape}: 3D volumes are not supported, only 2D images", path)
    if names is None:
        names = [str(i) for i in range(int(max(lab.max() for lab in all_labels if lab.size)) + 1)]
    image_arr = images[0] if len(images) == 1 else np.concatenate(images)
    label_arr = labels[0] if len(labels) == 1 else np.concatenate(labels)
    image_arr, label_arr, names = checked_arrays(image_arr, label_arr, names, path)
    name = path.name if split == "all" else f"{path.name}:{split or 'test'}"
    return ImageDataset(
        name=name,
        class_names=names,
        labels=label_arr,
        images=image_arr,
        split=split or "test",
        native_splits=True,
    )


# -- flat folders labelled by file name -----------------------------------------------------


def compile_label_pattern(pattern: str) -> re.Pattern:
    """Compile a regular expression that must have a named group ``label``.

    Raises:
        UserError: invalid expression or no ``(?P<label>...)`` group.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"label pattern '{pattern}' is not a valid regular expression ({exc})") from None
    if "label" not in rx.groupindex:
        raise UserError(f"label pattern '{pattern}' needs a named group, e.g. (?P<label>[a-z]+)")
    return rx


def open_pattern_folder(path: Path, pattern: str) -> ImageDataset:
    """Image files anywhere under ``path`` whose names carry the label.

    The pattern is searched in each file name (not the folder path); files it does not
    match are listed as skipped.
    """
    rx = compile_label_pattern(pattern)
    files, names, skipped = [], [], []
    for f in image_files(path):
        m = rx.search(f.name)
        if m is None or not m.group("label"):
            skipped.append((str(f), f"file name does not match the label pattern '{pattern}'"))
            continue
        files.append(str(f))
        names.append(m.group("label"))
    if not files:
        raise UserError(f"no image file name matches the label pattern '{pattern}'", path)
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return ImageDataset(
        name=path.name,
        class_names=classes,
        labels=np.asarray([index[n] for n in names], dtype=np.int64),
        paths=files,
        skipped=skipped,
    )
