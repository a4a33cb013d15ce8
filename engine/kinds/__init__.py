"""The model-kind seam: which kind a model is (decided once, in detect.py) and what each kind can do.

``kind_of(spec)`` answers "image" or "language" without importing MLX; ``get(kind)`` returns
that kind's :class:`~engine.kinds.base.ModelKind` (its module is imported on first use).
"""

from __future__ import annotations

from pathlib import Path

from engine.kinds.base import Listing, ModelKind
from engine.kinds.detect import IMAGE, LANGUAGE, kind_of, try_kind_of

KINDS = (IMAGE, LANGUAGE)
_ADAPTERS: dict[str, ModelKind] = {}


def get(kind: str) -> ModelKind:
    """The adapter of a kind name ("image" or "language")."""
    if kind not in _ADAPTERS:
        if kind == IMAGE:
            from engine.kinds.image import ImageKind

            _ADAPTERS[kind] = ImageKind()
        elif kind == LANGUAGE:
            from engine.kinds.language import LanguageKind

            _ADAPTERS[kind] = LanguageKind()
        else:
            raise ValueError(f"unknown model kind {kind!r}")
    return _ADAPTERS[kind]


def of(spec: str | Path) -> ModelKind:
    """The adapter of the kind ``spec`` is (raises UserError for neither kind)."""
    return get(kind_of(spec))


def listing(path: str | Path) -> Listing | None:
    """The model list's line for a folder or file of either kind, or None."""
    p = Path(path)
    kind = try_kind_of(p)
    return get(kind).listing(p) if kind is not None and p.exists() else None


_LANGUAGE_METRICS = frozenset({"perplexity", "prompt_tps", "generation_tps", "ttft_ms"})
_IMAGE_METRICS = frozenset({"accuracy", "macro_f1", "throughput_ips", "images_per_s"})


def run_kind(record) -> str | None:
    """The kind of model a stored run measured: its model's kind, else what its metrics say."""
    kind = try_kind_of(record.model_path) if record.model_path else None
    if kind is not None:
        return kind
    keys = set(record.metrics)
    if keys & _LANGUAGE_METRICS:
        return LANGUAGE
    if keys & _IMAGE_METRICS:
        return IMAGE
    return None


__all__ = [
    "IMAGE",
    "KINDS",
    "LANGUAGE",
    "Listing",
    "ModelKind",
    "get",
    "kind_of",
    "listing",
    "of",
    "run_kind",
    "try_kind_of",
]
