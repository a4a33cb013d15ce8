"""Preprocessing that travels with a model bundle: size, resize, crop, scaling, channels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image

from engine.core.errors import UserError

INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZE_POLICIES = ("stretch", "shorter_side_crop", "letterbox")
SCALINGS = ("unit", "symmetric", "raw")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's float32 NHWC input.

    Attributes:
        input_size: (height, width) the model sees.
        channels: 1 (grayscale) or 3.
        channel_order: "RGB" or "BGR" (3-channel models only).
        resize: "stretch" to the size, "shorter_side_crop" (resize the shorter side to
            size / crop_fraction, then centre-crop) or "letterbox" (fit and pad).
        crop_fraction: for shorter_side_crop, e.g. 0.875 for ImageNet-style 256 -> 224.
        interpolation: nearest, bilinear, bicubic or lanczos.
        scale: "unit" -> [0, 1], "symmetric" -> [-1, 1], "raw" -> [0, 255].
        mean, std: per-channel normalisation applied after scaling (None to skip).
    """

    input_size: tuple[int, int] = (224, 224)
    channels: int = 3
    channel_order: str = "RGB"
    resize: str = "stretch"
    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    scale: str = "unit"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise UserError(f"preprocessing channels must be 1 or 3, not {self.channels}")
        if self.resize not in RESIZE_POLICIES:
            raise UserError(f"unknown resize policy '{self.resize}' (use {', '.join(RESIZE_POLICIES)})")
        if self.interpolation not in INTERPOLATION:
            raise UserError(f"unknown interpolation '{self.interpolation}' (use {', '.join(INTERPOLATION)})")
        if self.scale not in SCALINGS:
            raise UserError(f"unknown scaling '{self.scale}' (use {', '.join(SCALINGS)})")
        if not (0.0 < self.crop_fraction <= 1.0):
            raise UserError(f"crop fraction must be in (0, 1], not {self.crop_fraction}")
        if self.channel_order not in ("RGB", "BGR"):
            raise UserError(f"channel order must be RGB or BGR, not {self.channel_order}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and len(v) not in (1, self.channels):
                raise UserError(f"preprocessing {name} needs 1 or {self.channels} values, got {len(v)}")
        if self.std is not None and any(s == 0 for s in self.std):
            raise UserError("preprocessing std must not contain zero")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean) if self.mean is not None else None
        d["std"] = list(self.std) if self.std is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "input_size" in kw:
            size = kw["input_size"]
            kw["input_size"] = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
        for name in ("mean", "std"):
            if kw.get(name) is not None:
                kw[name] = tuple(float(x) for x in kw[name])
        return cls(**kw)

    # -- images -------------------------------------------------------------
    def resize_image(self, img: Image.Image) -> Image.Image:
        h, w = self.input_size
        resample = INTERPOLATION[self.interpolation]
        if self.resize == "stretch":
            return img.resize((w, h), resample)
        if self.resize == "letterbox":
            ratio = min(w / img.width, h / img.height)
            nw, nh = max(1, round(img.width * ratio)), max(1, round(img.height * ratio))
            canvas = Image.new(img.mode, (w, h))
            canvas.paste(img.resize((nw, nh), resample), ((w - nw) // 2, (h - nh) // 2))
            return canvas
        # shorter_side_crop
        target_short = round(min(h, w) / self.crop_fraction)
        ratio = target_short / min(img.width, img.height)
        nw, nh = max(w, round(img.width * ratio)), max(h, round(img.height * ratio))
        img = img.resize((nw, nh), resample)
        left, top = (nw - w) // 2, (nh - h) // 2
        return img.crop((left, top, left + w, top + h))

    def image_to_uint8(self, img: Image.Image) -> np.ndarray:
        """Resize and convert channels; returns (H, W, C) uint8."""
        img = img.convert("L" if self.channels == 1 else "RGB")
        arr = np.asarray(self.resize_image(img), dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[..., None]
        if self.channels == 3 and self.channel_order == "BGR":
            arr = arr[..., ::-1]
        return np.ascontiguousarray(arr)

    def normalize(self, batch_uint8: np.ndarray) -> np.ndarray:
        """(N, H, W, C) uint8 at the model's size -> float32 model input."""
        x = batch_uint8.astype(np.float32)
        if self.scale == "unit":
            x /= 255.0
        elif self.scale == "symmetric":
            x = x / 127.5 - 1.0
        if self.mean is not None:
            x -= np.asarray(self.mean, dtype=np.float32)
        if self.std is not None:
            x /= np.asarray(self.std, dtype=np.float32)
        return x

    def __call__(self, img: Image.Image) -> np.ndarray:
        """One PIL image -> (H, W, C) float32."""
        return self.normalize(self.image_to_uint8(img)[None])[0]

    def fit_array(self, arr: np.ndarray) -> np.ndarray:
        """A uint8 (H, W) or (H, W, C) array -> (H, W, C) uint8 at the model's size and channels."""
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim == 2 and self.channels == 1 and arr.shape == tuple(self.input_size):
            return arr[..., None]
        if (
            arr.ndim == 3
            and self.channels == 3
            and arr.shape[:2] == tuple(self.input_size)
            and self.channel_order == "RGB"
        ):
            return arr
        return self.image_to_uint8(Image.fromarray(arr))
