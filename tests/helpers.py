"""Small helpers shared by tests."""

from __future__ import annotations

import csv
from pathlib import Path


def read_rows(path: str | Path, dicts: bool = True) -> list:
    """All rows of a CSV file (dicts keyed by the header unless dicts=False)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f) if dicts else csv.reader(f))
