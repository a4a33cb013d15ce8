"""The HAM10000 layout: a metadata CSV (image_id, lesion_id, dx, ...) and image folders.

The ISIC archive ships ``HAM10000_metadata.csv`` beside ``HAM10000_images_part_1/`` and
``HAM10000_images_part_2/`` with ``<image_id>.jpg`` files. Several images show the same
lesion, so the dataset carries ``lesion_id`` as its group: splits keep each lesion whole.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from engine.core.errors import UserError
from engine.image.data.dataset import ImageDataset
from engine.image.data.images import image_files

REQUIRED = ("image_id", "lesion_id", "dx")


def _header(path: Path) -> list[str] | None:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            row = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return [c.strip().lower() for c in row] if row else None


def is_metadata(path: Path) -> bool:
    header = _header(path)
    return header is not None and all(c in header for c in REQUIRED)


def find_metadata(folder: Path) -> Path | None:
    """The one CSV directly in ``folder`` with image_id, lesion_id and dx columns, or None.

    Raises:
        UserError: more than one such CSV (the user has to name one).
    """
    found = [p for p in sorted(folder.glob("*.csv")) if is_metadata(p)]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise UserError(f"several metadata CSVs ({names}); give the one to use as --data", folder)
    return found[0] if found else None


def open_ham10000(csv_path: Path, root: Path) -> ImageDataset:
    """Read the metadata CSV and find each image_id's file anywhere under ``root``.

    Classes are the sorted ``dx`` values (akiec, bcc, bkl, df, mel, nv, vasc for
    HAM10000). Rows whose image file is missing, and repeated image ids, are listed as
    skipped.

    Raises:
        UserError: not a metadata CSV, unreadable, or no row has an image file.
    """
    header = _header(csv_path)
    if header is None or not all(c in header for c in REQUIRED):
        raise UserError(f"not a HAM10000 metadata CSV: needs columns {', '.join(REQUIRED)}", csv_path)
    by_stem: dict[str, Path] = {}
    for f in image_files(root):
        by_stem.setdefault(f.stem, f)
    col = {name: header.index(name) for name in REQUIRED}
    files, dx, lesions, skipped = [], [], [], []
    seen: set[str] = set()
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            next(reader)
            for line, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) < len(header):
                    skipped.append((f"{csv_path}:{line}", f"row has {len(row)} of {len(header)} columns"))
                    continue
                image_id, lesion_id, label = (row[col[c]].strip() for c in REQUIRED)
                if not image_id or not label:
                    skipped.append((f"{csv_path}:{line}", "empty image_id or dx"))
                    continue
                if image_id in seen:
                    skipped.append((f"{csv_path}:{line}", f"image_id {image_id} listed twice"))
                    continue
                seen.add(image_id)
                file = by_stem.get(image_id)
                if file is None:
                    skipped.append((image_id, f"listed in {csv_path.name} but no image file found under {root}"))
                    continue
                files.append(str(file))
                dx.append(label)
                # An image without a lesion id is its own lesion.
                lesions.append(lesion_id or f"image:{image_id}")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read metadata CSV ({exc})", csv_path) from None
    if not files:
        raise UserError(f"no image listed in the metadata was found under {root}", csv_path)
    classes = sorted(set(dx))
    index = {c: i for i, c in enumerate(classes)}
    return ImageDataset(
        name=root.name if csv_path.parent == root else csv_path.stem,
        class_names=classes,
        labels=np.asarray([index[d] for d in dx], dtype=np.int64),
        paths=files,
        skipped=skipped,
        groups=np.asarray(lesions),
    )
