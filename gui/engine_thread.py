"""The one engine thread: a worker QObject on a QThread runs every MLX job.

MLX streams are thread-local: arrays built lazily on one thread cannot be
evaluated on another. So models are loaded, quantized, evaluated, benchmarked
and run here and nowhere else; the GUI sends frozen job dataclasses and gets
frozen results back through signals carrying the job id.
"""

from __future__ import annotations

import gc
import itertools
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from engine.core.errors import Cancelled, UserError
from engine.measure.results import ResultsStore
from engine.runtime import JobContext, Workspace

PARTIAL_INTERVAL_S = 0.1  # partial results reach the GUI at most ~10 times a second
PROGRESS_INTERVAL_S = 0.05


@dataclass
class _Pending:
    job_id: int
    job: object
    cancel: threading.Event


class EngineWorker(QObject):
    """Lives on the engine thread. Signals carry the job id as the first argument.

    ``Signal(object, ...)`` rather than ``Signal(int)``: PySide's int overflows past 2**31.
    """

    started = Signal(object, object)  # job id, title
    progress = Signal(object, object, object)  # job id, fraction, message
    partial = Signal(object, object)  # job id, tuple of partial payloads
    result = Signal(object, object)  # job id, result
    failed = Signal(object, object)  # job id, one-line message
    cancelled = Signal(object)  # job id
    finished = Signal(object)  # job id; always last, after result/failed/cancelled
    idle = Signal()  # the queue is empty
    stored = Signal()  # the results store was written (a job stored a run): views re-read it
    _wake = Signal()

    def __init__(self, store: ResultsStore | None = None):
        super().__init__()
        self._store = store
        self._workspace: Workspace | None = None
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._current: _Pending | None = None
        self._ids = itertools.count(1)
        self._wake.connect(self._drain)

    # -- called from the GUI thread ------------------------------------------------
    def submit(self, job) -> int:
        """Queue a job; returns its id at once."""
        pending = _Pending(next(self._ids), job, threading.Event())
        with self._lock:
            self._queue.append(pending)
        self._wake.emit()
        return pending.job_id

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel one job (queued or running), or every job when job_id is None."""
        with self._lock:
            targets = list(self._queue) + ([self._current] if self._current else [])
            for p in targets:
                if job_id is None or p.job_id == job_id:
                    p.cancel.set()

    def busy(self) -> bool:
        with self._lock:
            return self._current is not None or bool(self._queue)

    def current_job_id(self) -> int | None:
        with self._lock:
            return self._current.job_id if self._current else None

    # -- on the engine thread --------------------------------------------------------
    @Slot()
    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._current = None
                    break
                pending = self._current = self._queue.popleft()
            self._run(pending)
        self.idle.emit()

    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace(self._store)
            self._workspace.store.subscribe(self.stored.emit)  # every write announces itself
        return self._workspace

    def _run(self, p: _Pending) -> None:
        jid = p.job_id
        if p.cancel.is_set():
            self.cancelled.emit(jid)
            self.finished.emit(jid)
            return
        self.started.emit(jid, getattr(p.job, "title", type(p.job).__name__))
        buffer: list = []
        last = {"partial": 0.0, "progress": 0.0, "fraction": -1.0}

        def flush() -> None:
            if buffer:
                self.partial.emit(jid, tuple(buffer))
                buffer.clear()
            last["partial"] = time.monotonic()

        def on_partial(payload) -> None:
            buffer.append(payload)
            if time.monotonic() - last["partial"] >= PARTIAL_INTERVAL_S:
                flush()

        def on_progress(fraction: float, message: str) -> None:
            now = time.monotonic()
            moved = abs(fraction - last["fraction"]) >= 0.005 or fraction >= 1.0
            if moved and now - last["progress"] >= PROGRESS_INTERVAL_S or fraction >= 1.0:
                last["progress"], last["fraction"] = now, fraction
                self.progress.emit(jid, fraction, message)

        ctx = JobContext(on_progress, on_partial, p.cancel.is_set)
        try:
            outcome = p.job.run(ctx, self.workspace())
            flush()
            if p.cancel.is_set():
                self.cancelled.emit(jid)
            else:
                self.result.emit(jid, outcome)
        except Cancelled:
            flush()
            self.cancelled.emit(jid)
        except UserError as exc:
            flush()
            self.failed.emit(jid, str(exc))
        except MemoryError:
            flush()
            self.failed.emit(jid, "out of memory; try a smaller batch or model")
        except Exception as exc:  # a bug must not kill the engine thread
            flush()
            from engine.core.oserrors import as_user_error

            translated = as_user_error(exc)  # a full disk, a read-only target...: the cause in words
            if translated is None:
                traceback.print_exc()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.failed.emit(jid, str(translated) if translated is not None else f"{type(exc).__name__}: {first}")
        finally:
            self.finished.emit(jid)


class MainThreadGC(QObject):
    """Cyclic garbage collection on the GUI thread only, while an engine thread runs.

    Python collects cycles in whichever thread happens to allocate; when that is the engine
    thread and the garbage holds Qt wrappers (closed dialogs, old plot items), PySide
    finalizes them off the GUI thread and can deadlock against it (seen as a hang inside
    gc.collect on the engine thread). So automatic collection is switched off while any
    engine lives and a timer here collects by the same generation thresholds.
    """

    _users = 0

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500):
        super().__init__(parent)
        MainThreadGC._users += 1
        gc.disable()
        # What exists now (modules, the window) lives as long as the app: keep it out of every later
        # collection, so a full collection on the GUI thread scans only what was made since and never
        # stalls the event loop (a gen-2 pass over a large heap took ~100 ms mid-benchmark).
        gc.collect()
        gc.freeze()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)

    @Slot()
    def check(self) -> None:
        t0, t1, t2 = gc.get_threshold()
        c0, c1, c2 = gc.get_count()
        if c0 > t0:
            gc.collect(2 if c2 > t2 else 1 if c1 > t1 else 0)

    def stop(self) -> None:
        if self.timer.isActive():
            self.timer.stop()
            MainThreadGC._users -= 1
            if MainThreadGC._users == 0:
                gc.unfreeze()
                gc.enable()


class Engine(QObject):
    """Owns the QThread and the worker; the GUI's handle on the engine."""

    def __init__(self, store: ResultsStore | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("mlx-engine")
        self.worker = EngineWorker(store)
        self.worker.moveToThread(self.thread)
        self.gc = MainThreadGC(self)
        self.thread.start()

    def submit(self, job) -> int:
        return self.worker.submit(job)

    def cancel(self, job_id: int | None = None) -> None:
        self.worker.cancel(job_id)

    def busy(self) -> bool:
        return self.worker.busy()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything, stop the thread and wait for it; True if it stopped."""
        with self.worker._lock:
            for p in self.worker._queue:
                p.cancel.set()
        self.worker.cancel(None)
        self.thread.quit()
        stopped = self.thread.wait(timeout_ms)
        if stopped:
            self.gc.stop()
        return stopped
