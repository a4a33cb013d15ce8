"""Fixtures of the reliability tests: a corpus folder whose path has a space and non-ASCII letters."""

from __future__ import annotations

import pytest

from tests.reliability.corpus import ODD_NAME


@pytest.fixture
def corpus_dir(tmp_path):
    d = tmp_path / ODD_NAME
    d.mkdir()
    return d


# The GUI tests here use the main-window fixture and the leaked-thread check of tests/gui.
from tests.gui.conftest import no_leaked_threads, window  # noqa: E402, F401
