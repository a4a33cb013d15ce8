"""What a file the user hands the app is: an image, a model bundle or a checkpoint.

One table serves the app's file routing (Finder, Dock, command line) and the
document types the macOS bundle declares in its Info.plist
(packaging/mlx_quant_studio.spec reads DOCUMENT_TYPES).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.image.bundle import CONFIG_NAME
from engine.image.data.images import IMAGE_SUFFIXES
from engine.kinds.detect import is_hf_image_classifier

IMAGE = "image"
BUNDLE = "bundle"
CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class DocumentType:
    """A file type the macOS app registers for (CFBundleDocumentTypes).

    ``uti`` is the Uniform Type Identifier; ``declared`` is False for types macOS
    already knows (public.png ...) and True for types the app must declare itself
    (UTImportedTypeDeclarations) because no system UTI exists.
    """

    name: str
    kind: str
    uti: str
    extensions: tuple[str, ...] = ()
    declared: bool = False


DOCUMENT_TYPES: tuple[DocumentType, ...] = (
    DocumentType("PNG image", IMAGE, "public.png", ("png",)),
    DocumentType("JPEG image", IMAGE, "public.jpeg", ("jpg", "jpeg")),
    DocumentType("TIFF image", IMAGE, "public.tiff", ("tif", "tiff")),
    DocumentType("BMP image", IMAGE, "com.microsoft.bmp", ("bmp",)),
    DocumentType("WebP image", IMAGE, "org.webmproject.webp", ("webp",)),
    DocumentType("safetensors weights", CHECKPOINT, "org.mlxquantstudio.safetensors", ("safetensors",), True),
    DocumentType("PyTorch checkpoint", CHECKPOINT, "org.mlxquantstudio.pytorch", ("pth", "pt"), True),
    DocumentType("Keras model", CHECKPOINT, "org.mlxquantstudio.keras", ("keras",), True),
    DocumentType("HDF5 weights", CHECKPOINT, "org.mlxquantstudio.hdf5", ("h5", "hdf5"), True),
    DocumentType("ONNX model", CHECKPOINT, "org.mlxquantstudio.onnx", ("onnx",), True),
    DocumentType("GGUF model", CHECKPOINT, "org.mlxquantstudio.gguf", ("gguf",), True),
    # Model bundles are plain folders (config.json + model.safetensors).
    DocumentType("Model bundle folder", BUNDLE, "public.folder"),
)

# Checkpoint suffixes the app routes to its importer (.npz too, though Finder gets no claim on it).
CHECKPOINT_SUFFIXES = frozenset(
    {f".{e}" for t in DOCUMENT_TYPES if t.kind == CHECKPOINT for e in t.extensions} | {".npz"}
)


def classify(path: str | Path) -> str | None:
    """IMAGE, BUNDLE or CHECKPOINT for an existing path, judged by its name; None otherwise.

    A directory is a bundle (a model to open) if it holds a config.json, and a checkpoint to
    import when that config is a Hugging Face image classifier's; the importer and the image
    decoder still validate the contents.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / CONFIG_NAME).is_file():
            return None
        try:
            cfg = json.loads((p / CONFIG_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return BUNDLE  # opening it says what is wrong
        return CHECKPOINT if isinstance(cfg, dict) and is_hf_image_classifier(cfg) else BUNDLE
    if not p.is_file():
        return None
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return IMAGE
    if suffix in CHECKPOINT_SUFFIXES:
        return CHECKPOINT
    return None


def describe_unusable(path: str | Path) -> str:
    """One line saying why ``classify`` returned None for ``path``."""
    p = Path(path)
    if not p.exists():
        return f"{p}: no such file or folder"
    if p.is_dir():
        return f"{p}: not a model bundle (no {CONFIG_NAME})"
    known = sorted(IMAGE_SUFFIXES | CHECKPOINT_SUFFIXES)
    return f"{p}: not an image or model file (expected one of {', '.join(known)})"
