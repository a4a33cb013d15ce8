"""The GUI's error route says what an OS failure is, in words, naming the path (engine.core.oserrors)."""

from __future__ import annotations

import errno
import os

from engine.jobs.image import QuantizeJob
from tests.gui.test_app import idle


def test_a_full_disk_in_a_job_reaches_the_dialog_as_one_line(qtbot, window, monkeypatch):
    target = "/Volumes/usb stick/int8/model.safetensors"

    def full_disk(self, ctx, ws):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)

    monkeypatch.setattr(QuantizeJob, "run", full_disk)
    window.quantize_tab.start()
    qtbot.waitUntil(lambda: idle(window) and window.last_error is not None, timeout=20000)
    assert window.last_error == f"no space left on device while writing {target}"
    assert window.engine.thread.isRunning()
