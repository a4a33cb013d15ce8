"""argparse ``type=`` parsers shared by every command-line module.

A parser raises ``argparse.ArgumentTypeError``, so a bad value is a usage error (exit 2)
with one line naming the value. This module imports nothing from the engine, so feature
modules can use it at import time without a cycle through ``engine.cli``.
"""

from __future__ import annotations

import argparse


def _convert(text: str, kind, noun: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {noun}, got '{text}'") from None


def positive_int(text: str) -> int:
    value = _convert(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonneg_int(text: str) -> int:
    value = _convert(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _convert(text, float, "a number")
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def nonneg_float(text: str) -> float:
    value = _convert(text, float, "a number")
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got '{text}'")
    return value


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, e.g. '2,3,4'."""
    try:
        values = tuple(int(t) for t in csv_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


OVERWRITE_HELP = "replace what --out holds if this app wrote it (anything else there is never touched)"
