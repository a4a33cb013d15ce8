"""Image corruptions at five severities, after ImageNet-C (Hendrycks & Dietterich, 2019).

Each corruption acts on the uint8 image at the model's input size (as ImageNet-C acts on
the 224 px crop), so it runs inside the decode-ahead thread with numpy and PIL only.
Random corruptions draw from a generator seeded by (seed, corruption, severity, image
index), so a run is reproducible whatever the batch size or thread timing.

| corruption       | parameter per severity 1..5                                   |
| ---------------- | ------------------------------------------------------------- |
| gaussian_noise   | std 0.08, 0.12, 0.18, 0.26, 0.38 (pixel values in [0, 1])      |
| jpeg_compression | JPEG quality 25, 18, 15, 10, 7                                 |
| contrast         | factor 0.4, 0.3, 0.2, 0.1, 0.05 towards the image mean         |
| gaussian_blur    | sigma 0.5, 0.75, 1, 1.5, 2 px, times max(1, side / 64)         |
| brightness       | +0.1 ... +0.5 on HSV value (grayscale: on intensity)           |
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.core.errors import UserError

SEVERITIES = (1, 2, 3, 4, 5)
PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "gaussian_blur": (0.5, 0.75, 1.0, 1.5, 2.0),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
}
ALIASES = {"noise": "gaussian_noise", "jpeg": "jpeg_compression", "blur": "gaussian_blur"}
CORRUPTION_NAMES = tuple(PARAMETERS)


def _to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)


def _from_pil(pil: Image.Image, channels: int) -> np.ndarray:
    arr = np.asarray(pil, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr[..., :channels]


def gaussian_noise(img: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    x = _to_float(img)
    return _to_uint8(x + rng.normal(0.0, std, size=x.shape).astype(np.float32))


def jpeg_compression(img: np.ndarray, quality: float) -> np.ndarray:
    buf = io.BytesIO()
    _pil(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as decoded:
        return _from_pil(decoded.convert("L" if img.shape[-1] == 1 else "RGB"), img.shape[-1])


def contrast(img: np.ndarray, factor: float) -> np.ndarray:
    x = _to_float(img)
    mean = x.mean()
    return _to_uint8((x - mean) * factor + mean)


def gaussian_kernel(sigma: float, truncate: float = 3.0) -> np.ndarray:
    radius = max(1, int(truncate * sigma + 0.5))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with symmetric (half-sample) edge padding."""
    k = gaussian_kernel(sigma).astype(np.float32)
    r = len(k) // 2
    h, w = img.shape[:2]
    # Symmetric padding reflects repeatedly when the kernel is wider than the image.
    x = np.pad(img.astype(np.float32), [(r, r), (0, 0), (0, 0)], mode="symmetric")
    x = sum(k[j] * x[j : j + h] for j in range(len(k)))
    x = np.pad(x, [(0, 0), (r, r), (0, 0)], mode="symmetric")
    x = sum(k[j] * x[:, j : j + w] for j in range(len(k)))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def brightness(img: np.ndarray, amount: float) -> np.ndarray:
    if img.shape[-1] == 1:
        return _to_uint8(_to_float(img) + amount)
    hsv = np.asarray(_pil(img).convert("HSV"), dtype=np.float32) / 255.0
    hsv[..., 2] = np.clip(hsv[..., 2] + amount, 0.0, 1.0)
    out = Image.fromarray(_to_uint8(hsv), mode="HSV").convert("RGB")
    return np.asarray(out, dtype=np.uint8)


def canonical_name(name: str) -> str:
    """'jpeg' -> 'jpeg_compression' etc.

    Raises:
        UserError: unknown corruption.
    """
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in PARAMETERS:
        raise UserError(f"unknown corruption '{name}' (use {', '.join(CORRUPTION_NAMES)})")
    return key


@dataclass(frozen=True)
class Corruption:
    """One corruption at one severity; call it as a decode-ahead transform (image, index)."""

    name: str
    severity: int
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "name", canonical_name(self.name))
        if self.severity not in SEVERITIES:
            raise UserError(f"corruption severity must be 1..5, not {self.severity}")

    @property
    def parameter(self) -> float:
        return PARAMETERS[self.name][self.severity - 1]

    @property
    def label(self) -> str:
        return f"{self.name}:{self.severity}"

    def __call__(self, img: np.ndarray, index: int = 0) -> np.ndarray:
        if img.ndim == 2:
            img = img[..., None]
        p = self.parameter
        if self.name == "gaussian_noise":
            rng = np.random.default_rng([self.seed, CORRUPTION_NAMES.index(self.name), self.severity, index])
            return gaussian_noise(img, p, rng)
        if self.name == "jpeg_compression":
            return jpeg_compression(img, p)
        if self.name == "contrast":
            return contrast(img, p)
        if self.name == "gaussian_blur":
            return gaussian_blur(img, blur_sigma(min(img.shape[:2]), self.severity))
        return brightness(img, p)


def parse_corruptions(text: str) -> tuple[str, ...]:
    """'noise,jpeg' or 'all' -> canonical names."""
    if text.strip().lower() == "all":
        return CORRUPTION_NAMES
    names = [canonical_name(t) for t in text.split(",") if t.strip()]
    return tuple(dict.fromkeys(names))


def parse_severities(text: str) -> tuple[int, ...]:
    """'1,3,5' -> (1, 3, 5).

    Raises:
        UserError: not integers in 1..5.
    """
    try:
        values = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise UserError(f"severities must be integers 1..5, not '{text}'") from None
    if not values or any(v not in SEVERITIES for v in values):
        raise UserError(f"severities must be integers 1..5, not '{text}'")
    return tuple(values)


def blur_sigma(side: int, severity: int) -> float:
    """The blur's sigma in pixels for an image whose shorter side is ``side``."""
    return PARAMETERS["gaussian_blur"][severity - 1] * max(1.0, side / 64.0)
