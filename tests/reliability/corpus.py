"""A corpus of bad and unusual inputs, generated into a folder by the tests themselves.

Nothing binary is committed: every file is written here from PIL, numpy, safetensors
or pickle, so the corpus documents exactly what each case is.
"""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from engine.core import paths

DIGIT = np.zeros((28, 28), dtype=np.uint8)
DIGIT[4:24, 12:16] = 255  # a vertical bar, roughly a "1"

# A name with a space and non-ASCII letters, used for folders and files alike.
ODD_NAME = "dossier spécial ü 数据"


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def digit_png(path: Path) -> Path:
    Image.fromarray(DIGIT, mode="L").save(path)
    return path


# -- images that must be rejected with one line naming the file -------------------------------


def truncated_png(d: Path) -> Path:
    data = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    p = d / "truncated.png"
    p.write_bytes(data[: len(data) // 2])
    return p


def corrupt_jpeg(d: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    # Keep the headers, scramble the entropy-coded data and drop the end marker.
    for i in range(len(data) // 2, len(data) - 2):
        data[i] = (data[i] * 7 + 13) % 256
    p = d / "corrupt.jpg"
    p.write_bytes(bytes(data[:-40]))
    return p


def text_named_png(d: Path) -> Path:
    p = d / "notes.png"
    p.write_text("this is a shopping list, not an image\n")
    return p


def empty_file(d: Path, name: str) -> Path:
    p = d / name
    p.write_bytes(b"")
    return p


def empty_png(d: Path) -> Path:
    return empty_file(d, "empty.png")


def bomb_png(d: Path) -> Path:
    """A PNG whose header claims 20000x20000 pixels (400 M) with a tiny body."""
    sig = b"\x89PNG\r\n\x1a\n"

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # 8-bit greyscale
    body = zlib.compress(b"\x00" * 1000)
    p = d / "bomb.png"
    p.write_bytes(sig + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return p


BAD_IMAGES = {
    "truncated_png": (truncated_png, "truncated or corrupt"),
    "corrupt_jpeg": (corrupt_jpeg, "truncated or corrupt"),
    "text_named_png": (text_named_png, "not an image"),
    "empty_png": (empty_png, "empty"),
    "bomb_png": (bomb_png, "large"),
}


# -- valid but unusual images: handled, not rejected -------------------------------------------


def png16(d: Path) -> Path:
    """A 16-bit greyscale PNG using only part of the range (as scanners do)."""
    arr = (DIGIT.astype(np.uint16) * 40 + 1000).astype(np.uint16)
    p = d / "sixteen.png"
    Image.fromarray(arr).save(p)
    return p


def palette_png(d: Path) -> Path:
    p = d / "palette.png"
    Image.fromarray(DIGIT, mode="L").convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(p)
    return p


def cmyk_jpeg(d: Path) -> Path:
    p = d / "cmyk.jpg"
    Image.fromarray(DIGIT, mode="L").convert("RGB").convert("CMYK").save(p, quality=100)
    return p


def rgba_png(d: Path) -> Path:
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., :3] = DIGIT[..., None]
    rgba[..., 3] = 255
    p = d / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(p)
    return p


def exif_rotated_jpeg(d: Path) -> Path:
    """Stored sideways with EXIF orientation 6 (rotate 90° clockwise to display)."""
    stored = np.rot90(DIGIT, k=1)  # the display image rotated 90° counter-clockwise
    img = Image.fromarray(np.ascontiguousarray(stored), mode="L")
    exif = Image.Exif()
    exif[0x0112] = 6
    p = d / "rotated.jpg"
    img.save(p, quality=100, exif=exif.tobytes())
    return p


UNUSUAL_IMAGES = {
    "png16": png16,
    "palette_png": palette_png,
    "cmyk_jpeg": cmyk_jpeg,
    "rgba_png": rgba_png,
    "exif_rotated_jpeg": exif_rotated_jpeg,
}


# -- checkpoints ------------------------------------------------------------------------------


def default_weights_path() -> Path:
    return paths.DEFAULT_MODEL_DIR / "model.safetensors"


def truncated_safetensors(d: Path) -> Path:
    data = default_weights_path().read_bytes()
    p = d / "truncated.safetensors"
    p.write_bytes(data[: len(data) // 3])
    return p


def empty_safetensors(d: Path) -> Path:
    return empty_file(d, "empty.safetensors")


def garbage_safetensors(d: Path) -> Path:
    p = d / "garbage.safetensors"
    p.write_bytes(b"\xff" * 8 + b"not json at all" * 10)
    return p


class _Payload:
    """Unpickling this calls open(sentinel, 'w'): proof that code ran."""

    def __init__(self, sentinel: str):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def pickle_payload_pth(d: Path, sentinel: Path) -> Path:
    """A .pth whose unpickling would create ``sentinel``; a plain pickle and a torch zip both."""
    p = d / "evil.pth"
    p.write_bytes(pickle.dumps({"conv.weight": _Payload(str(sentinel))}))
    return p


def pickle_payload_torch_zip(d: Path, sentinel: Path) -> Path:
    import torch

    p = d / "evil_zip.pth"
    torch.save({"conv.weight": torch.zeros(2), "x": _Payload(str(sentinel))}, p)
    return p


# -- datasets ---------------------------------------------------------------------------------


def class_folders(root: Path, classes: dict[str, int]) -> Path:
    """A folder per class with ``n`` digit PNGs each (0 makes an empty class)."""
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            digit_png(root / name / f"img {i}.png")
    return root
