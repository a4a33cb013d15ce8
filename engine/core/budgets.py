"""Budgets for sizes read from files: nothing a file claims is allocated before it passes here.

A bundle's ``input_size``, a class count, a tensor's shape, a zip member's size or an image's
pixels come from a file the user may not have made. Each is checked twice before anything is
allocated: against a plausibility limit (a hostile number gets a message, not an overflow) and,
as bytes, against the memory the OS can give now (:mod:`engine.core.memory_guard`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from engine.core.errors import UserError
from engine.core.memory_guard import available_memory_bytes, human

# Far above any image classifier's input and any label set; far below what would overflow.
MAX_INPUT_SIDE = 16_384
MAX_CLASSES = 1_000_000
MAX_TENSOR_ELEMENTS = 2**40
# One preprocessed input is copied a few times on its way in (PIL, float32, batch, first activations).
INPUT_COPIES = 8


def guard_on() -> bool:
    return os.environ.get("MQS_MEMORY_GUARD", "1") != "0"


def check_bytes(nbytes: int, what: str, where: str | Path | None, factor: float = 1.0) -> None:
    """Raise UserError when allocating ``nbytes * factor`` would not fit in the memory available now.

    Args:
        nbytes: the size a file asks for.
        what: the thing, for the message ("one input of 100000x100000x3").
        where: the file named in the message.
        factor: how many copies of it exist at once.
    """
    needed = int(nbytes * factor)
    if not guard_on() or needed <= 0:
        return
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise UserError(f"{what} needs about {human(needed)} of memory but only {human(available)} is available", where)


def check_count(value, what: str, where: str | Path | None, limit: int) -> int:
    """``value`` as an int between 1 and ``limit``, else a one-line UserError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{what} must be a whole number, not {value!r}", where)
    if value != int(value) or not 1 <= value <= limit:
        raise UserError(f"{what} is {_short(value)}; it must be between 1 and {limit:,}", where)
    return int(value)


def check_input_size(size, channels, where: str | Path | None) -> tuple[int, int]:
    """A bundle's ``input_size`` (N or [H, W]) checked for plausibility and memory; returns (H, W)."""
    parts = [size, size] if isinstance(size, (int, float)) else size
    if not isinstance(parts, Sequence) or isinstance(parts, str) or len(parts) != 2:
        raise UserError(f"input_size must be N or [height, width], not {size!r}", where)
    h, w = (check_count(v, "input_size", where, MAX_INPUT_SIDE) for v in parts)
    c = check_count(channels, "channels", where, 4)
    check_bytes(h * w * c * 4, f"one {h}x{w}x{c} input", where, INPUT_COPIES)
    return h, w


def check_class_count(n, where: str | Path | None) -> int:
    return check_count(n, "the class count", where, MAX_CLASSES)


def check_tensor_shape(name: str, shape: Sequence[int], itemsize: int, where: str | Path | None) -> int:
    """Bytes of a tensor whose shape a file states; raises UserError for an implausible one."""
    elements = 1
    for d in shape:
        if not isinstance(d, int) or d < 0:
            raise UserError(f"tensor '{name}' has an invalid shape {list(shape)}", where)
        elements *= d
    if elements > MAX_TENSOR_ELEMENTS:
        raise UserError(f"tensor '{name}' claims {_short(elements)} elements, far more than any model holds", where)
    return elements * itemsize


def check_bundle_config(cfg: dict, where: str | Path) -> None:
    """The sizes in a bundle's config.json: input_size x channels, class count (labels, num_classes)."""
    prep = cfg.get("preprocessing")
    if isinstance(prep, dict) and "input_size" in prep:
        check_input_size(prep["input_size"], prep.get("channels", 3), where)
    labels = cfg.get("labels")
    if isinstance(labels, list) and len(labels) > MAX_CLASSES:
        raise UserError(f"config.json lists {len(labels):,} labels; at most {MAX_CLASSES:,} are supported", where)
    arch_config = cfg.get("arch_config")
    if isinstance(arch_config, dict) and "num_classes" in arch_config:
        check_class_count(arch_config["num_classes"], where)


def _short(value) -> str:
    text = f"{value:,}" if isinstance(value, int) else repr(value)
    return text if len(text) <= 24 else f"about 10^{int(math.log10(abs(value)))}" if value else text
