"""GUI fixtures: a main window on its own data directory, checked for leaked threads."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture
def window(qtbot):
    from gui.app import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    # The default model's card loads on the engine thread at start-up.
    qtbot.waitUntil(lambda: w.models_tab.layers.rowCount() > 0, timeout=20000)
    yield w
    w.close()
    assert w.engine.thread.isFinished(), "the engine thread must stop when the window closes"


@pytest.fixture(autouse=True)
def no_leaked_threads():
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon]
    assert not leaked, f"threads left running: {leaked}"
