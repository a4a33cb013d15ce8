"""Decode image files defensively: every failure becomes a one-line UserError."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.core.errors import UserError
from engine.core.native_gate import check_image_header

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# A decompression bomb guard: far above any medical or photo image we expect.
MAX_PIXELS = 64_000_000


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError("file not found", path)
    if path.is_dir():
        raise UserError("is a folder, not an image file", path)
    if path.stat().st_size == 0:
        raise UserError("empty file, not an image", path)


def _to_8bit_rgb_or_l(img: Image.Image) -> Image.Image:
    """Normalise the many PIL modes to 'L' or 'RGB' without losing meaning."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        lo, hi = (float(v) for v in img.getextrema())
        # Scale the image's own range to 0..255 (16-bit scans rarely use the full range), a band of
        # rows at a time so a large scan is never copied whole, let alone as float64.
        w, h = img.size
        out = np.zeros((h, w), dtype=np.uint8)
        if hi > lo:
            step = max(1, (1 << 20) // max(1, w))
            for r in range(0, h, step):
                band = np.asarray(img.crop((0, r, w, min(h, r + step))), dtype=np.float64)
                out[r : r + step] = ((band - lo) / (hi - lo) * 255.0).round().astype(np.uint8)
        return Image.fromarray(out, mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode in ("L", "RGB"):
        return img
    if img.mode == "1":
        return img.convert("L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def load_image(path: str | Path) -> Image.Image:
    """Open, fully decode and orient an image; returns an 'L' or 'RGB' PIL image.

    Raises:
        UserError: missing, empty, not an image, truncated/corrupt, or too large.
    """
    path = Path(path)
    _check_file(path)
    return _decode(path, path)


def decode_image_bytes(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image held in memory (an upload) with the same checks as load_image.

    Args:
        data: the encoded file (PNG, JPEG, ...).
        name: what to call it in error messages (e.g. the uploaded file's name).
        max_pixels: a tighter pixel limit (the service's per-request cap).

    Raises:
        UserError: empty, not an image, truncated/corrupt, or too large.
    """
    if not data:
        raise UserError("empty upload, not an image", name)
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source: Path | BinaryIO, where: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                # PIL has parsed only the header: dimensions x channels x bit depth pass a budget first.
                check_image_header(img.size, img.mode, where, max_pixels)
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of an upright image
                return _to_8bit_rgb_or_l(img)
    except UserError:
        raise
    except UnidentifiedImageError:
        raise UserError("not an image file (or an image format this app cannot read)", where) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError("image dimensions are implausibly large (decompression bomb guard)", where) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"image is truncated or corrupt ({exc})", where) from None


def check_image(path: str | Path) -> str | None:
    """Cheap validation for drag-and-drop targets: None if fine, else the message."""
    try:
        load_image(path)
    except UserError as exc:
        return str(exc)
    return None


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` (recursive, sorted, hidden files left out)."""
    return sorted(
        f
        for f in root.rglob("*")
        if f.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in f.relative_to(root).parts)
        and f.is_file()
    )
