"""The protocol every model kind meets, so jobs and front ends never branch on the kind themselves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Listing:
    """What a model list shows for one model, read from its files without loading it."""

    path: str
    name: str
    recipe: str
    arch: str
    kind: str
    parent: str | None = None  # the float model a variant was made from, as its files record it

    @property
    def quantized(self) -> bool:
        return self.recipe not in ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class MethodOffer:
    """The quantization methods a kind offers and what their calibration data is."""

    methods: tuple[tuple[str, str], ...]  # (name, one-line description); "rtn" first, needing no calibration
    calib_hint: str  # what the calibration field takes
    calib_placeholder: str  # shown in the empty field: the default, or what is required
    calib_required: bool  # no default calibration data exists
    calib_size: int  # default count; 0: the method decides ("auto")
    calib_unit: str  # "images", "chunks"
    auto_hint: str = ""  # what "auto" means, when calib_size is 0


class ModelKind(Protocol):
    """What the app can do with one kind of model.

    ``name`` is the value :func:`engine.kinds.detect.kind_of` returns for it.
    """

    name: str
    label: str  # "image classifier", "language model"

    def resolve(self, spec: str | Path) -> str:
        """The canonical key of ``spec`` (an absolute path, or a Hugging Face id)."""

    def stamp(self, key: str) -> float:
        """Changes when the model's files change (cache invalidation); 0.0 for remote models."""

    def load(self, key: str, progress: Progress | None = None) -> Any:
        """Load the model (memory-guarded); raises UserError for bad files."""

    def card(self, model: Any) -> Any:
        """The model card (layers, sizes, bits per weight) of a loaded model."""

    def listing(self, path: Path) -> Listing | None:
        """The model list's line for a folder or file, or None when it is not this kind."""

    def recipes(self) -> tuple[str, ...]:
        """The recipe names the Quantize tab offers for this kind."""

    def methods(self) -> MethodOffer:
        """The quantization methods the Quantize tab offers for this kind, and their calibration data."""
