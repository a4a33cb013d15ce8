"""One line under the Benchmark tab's form saying what quantization buys on this machine."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QLabel

LINUX_CPU_NOTE = (
    "On Linux, MLX runs on its CPU backend: quantized variants are smaller, not faster "
    "(int4 measured 1.1-1.3x slower than fp32 here); they trade speed for size. "
    "On Apple silicon (Metal) the quantized path reads 4-8x fewer bytes."
)


def backend_note_text(platform: str = sys.platform) -> str | None:
    """The note for ``platform``, or None where MLX has an accelerated backend (macOS)."""
    return LINUX_CPU_NOTE if platform.startswith("linux") else None


def backend_note(platform: str = sys.platform) -> QLabel:
    """A word-wrapped label with the note; hidden where there is nothing to say."""
    text = backend_note_text(platform)
    label = QLabel(text or "")
    label.setObjectName("backendNote")
    label.setWordWrap(True)
    font = label.font()  # the palette's text colour, so it reads in light and dark alike
    font.setItalic(True)
    label.setFont(font)
    label.setVisible(text is not None)
    return label
