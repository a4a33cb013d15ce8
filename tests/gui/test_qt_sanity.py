"""Guards against a Qt binding release that corrupts reference counts.

PySide6 6.12.0 drops a reference to ``True`` on every signal emission under
Python 3.11; after a few thousand signals the interpreter aborts at exit with
"bool_dealloc: deallocating True or False". pyproject.toml excludes it; this
test fails fast if another release does the same.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal, Slot


class _Emitter(QObject):
    sig = Signal(object)


class _Receiver(QObject):
    def __init__(self):
        super().__init__()
        self.n = 0

    @Slot(object)
    def on(self, value):
        self.n += 1


def test_signal_emission_keeps_reference_counts(qtbot):
    emitter, receiver = _Emitter(), _Receiver()
    emitter.sig.connect(receiver.on)
    emitter.sig.emit(0)  # warm-up: first emission may cache objects
    before = sys.getrefcount(True), sys.getrefcount(None)
    for i in range(500):
        emitter.sig.emit(i)
    after = sys.getrefcount(True), sys.getrefcount(None)
    assert receiver.n == 501
    assert after[0] - before[0] > -50, f"True lost {before[0] - after[0]} references in 500 signal emissions"
    assert after[1] - before[1] > -50, f"None lost {before[1] - after[1]} references in 500 signal emissions"
