"""Shared fixtures: every test gets its own data directory; Qt runs offscreen."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path_factory, monkeypatch):
    """Results database, saved variants and settings go to a per-test directory."""
    data = tmp_path_factory.mktemp("mqs-data")
    monkeypatch.setenv("MQS_DATA_DIR", str(data))
    return data


@pytest.fixture(scope="session")
def default_bundle_path() -> Path:
    from engine.core.paths import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


@pytest.fixture(scope="session")
def qapp_cls():
    """pytest-qt builds the app's own QApplication subclass (it handles Finder's file-open events)."""
    from gui.file_open import StudioApplication

    return StudioApplication
