"""Routes engine signals to the tab that submitted the job, on the GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from gui.engine_thread import Engine


@dataclass
class _Handlers:
    on_result: Callable[[Any], None] | None = None
    on_partial: Callable[[tuple], None] | None = None
    on_progress: Callable[[float, str], None] | None = None
    on_failed: Callable[[str], None] | None = None
    on_done: Callable[[], None] | None = None


class JobRouter(QObject):
    """Submit jobs with callbacks; results of a replaced (stale) job are dropped."""

    job_started = Signal(object, object)  # job id, title
    job_progress = Signal(object, object, object)  # job id, fraction, message
    job_failed = Signal(object, object)  # job id, message: the window's one error report (dialog, status bar)
    job_cancelled = Signal(object)
    job_finished = Signal(object)

    def __init__(self, engine: Engine, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self._handlers: dict[int, _Handlers] = {}
        w = engine.worker
        w.started.connect(self._started)
        w.progress.connect(self._progress)
        w.partial.connect(self._partial)
        w.result.connect(self._result)
        w.failed.connect(self._failed)
        w.cancelled.connect(self._cancelled)
        w.finished.connect(self._finished)

    def submit(self, job, replace: int | None = None, **handlers) -> int:
        """Queue ``job``; ``replace`` cancels an earlier job and drops its callbacks."""
        if replace is not None:
            self.cancel(replace)
            self._handlers.pop(replace, None)
        job_id = self.engine.submit(job)
        self._handlers[job_id] = _Handlers(**handlers)
        return job_id

    def cancel(self, job_id: int | None = None) -> None:
        self.engine.cancel(job_id)

    def pending(self) -> int:
        return len(self._handlers)

    @Slot(object, object)
    def _started(self, jid, title) -> None:
        self.job_started.emit(jid, title)

    @Slot(object, object, object)
    def _progress(self, jid, fraction, message) -> None:
        h = self._handlers.get(jid)
        if h and h.on_progress:
            h.on_progress(fraction, message)
        self.job_progress.emit(jid, fraction, message)

    @Slot(object, object)
    def _partial(self, jid, payloads) -> None:
        h = self._handlers.get(jid)
        if h and h.on_partial:
            h.on_partial(payloads)

    @Slot(object, object)
    def _result(self, jid, outcome) -> None:
        h = self._handlers.get(jid)
        if h and h.on_result:
            h.on_result(outcome)

    @Slot(object, object)
    def _failed(self, jid, message) -> None:
        h = self._handlers.get(jid)
        if h is None:
            return
        if h.on_failed:
            h.on_failed(message)
        self.job_failed.emit(jid, message)

    @Slot(object)
    def _cancelled(self, jid) -> None:
        self.job_cancelled.emit(jid)

    @Slot(object)
    def _finished(self, jid) -> None:
        h = self._handlers.pop(jid, None)
        if h and h.on_done:
            h.on_done()
        self.job_finished.emit(jid)
