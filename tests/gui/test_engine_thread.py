"""The engine thread: queued jobs, signals with job ids, failures, cancellation, shutdown."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from PySide6.QtCore import QObject, Slot

from engine.core.errors import UserError
from gui.engine_thread import Engine


class Recorder(QObject):
    """Receives the worker's signals on the GUI thread through @Slot methods (not lambdas)."""

    def __init__(self, worker):
        super().__init__()
        self.results, self.failed, self.cancelled, self.finished, self.partials = [], [], [], [], []
        worker.result.connect(self.on_result)
        worker.failed.connect(self.on_failed)
        worker.cancelled.connect(self.on_cancelled)
        worker.finished.connect(self.on_finished)
        worker.partial.connect(self.on_partial)

    @Slot(object, object)
    def on_result(self, jid, r):
        self.results.append((jid, r))

    @Slot(object, object)
    def on_failed(self, jid, msg):
        self.failed.append((jid, msg))

    @Slot(object)
    def on_cancelled(self, jid):
        self.cancelled.append(jid)

    @Slot(object)
    def on_finished(self, jid):
        self.finished.append(jid)

    @Slot(object, object)
    def on_partial(self, jid, payloads):
        self.partials.append(payloads)


@dataclass(frozen=True)
class MlxJob:
    """Builds and evaluates an MLX array, recording the thread it ran on."""

    title: str = "mlx"

    def run(self, ctx, ws):
        import mlx.core as mx

        x = mx.arange(10, dtype=mx.float32)
        total = mx.sum(x * 2).item()
        return (threading.current_thread().name, threading.get_ident(), total)


@dataclass(frozen=True)
class FailingJob:
    kind: str = "user"
    title: str = "fail"

    def run(self, ctx, ws):
        if self.kind == "user":
            raise UserError("bad input", "/tmp/some file.png")
        raise RuntimeError("boom\nsecond line")


@dataclass(frozen=True)
class SlowJob:
    steps: int = 10_000
    title: str = "slow"

    def run(self, ctx, ws):
        for i in range(self.steps):
            ctx.check()
            ctx.partial(i)
            ctx.progress(i / self.steps, f"step {i}")
            time.sleep(0.002)
        return "done"


@pytest.fixture
def engine(qtbot):
    eng = Engine()
    yield eng
    assert eng.shutdown()
    assert eng.thread.isFinished()


def test_jobs_run_on_one_engine_thread_not_the_ui_thread(qtbot, engine):
    rec = Recorder(engine.worker)
    results = rec.results
    ids = [engine.submit(MlxJob()) for _ in range(3)]
    qtbot.waitUntil(lambda: len(results) == 3, timeout=10000)
    assert [jid for jid, _ in results] == ids
    idents = {r[1] for _, r in results}
    assert len(idents) == 1 and threading.get_ident() not in idents
    assert all(r[2] == 90.0 for _, r in results)


def test_a_failing_job_leaves_the_engine_alive(qtbot, engine):
    rec = Recorder(engine.worker)
    failed, finished = rec.failed, rec.finished
    a = engine.submit(FailingJob("user"))
    b = engine.submit(FailingJob("bug"))
    c = engine.submit(MlxJob())
    qtbot.waitUntil(lambda: len(finished) == 3, timeout=10000)
    assert failed[0] == (a, "/tmp/some file.png: bad input")
    assert failed[1] == (b, "RuntimeError: boom")
    assert [jid for jid, _ in rec.results] == [c] and finished == [a, b, c]


def test_cancel_stops_a_running_job_and_the_next_one_runs(qtbot, engine):
    rec = Recorder(engine.worker)
    cancelled, results, partials = rec.cancelled, rec.results, rec.partials
    slow = engine.submit(SlowJob())
    qtbot.waitUntil(lambda: len(partials) > 0, timeout=10000)
    t0 = time.monotonic()
    engine.cancel(slow)
    nxt = engine.submit(SlowJob(steps=3))
    qtbot.waitUntil(lambda: len(results) == 1, timeout=10000)
    assert time.monotonic() - t0 < 1.0
    assert cancelled == [slow] and results == [(nxt, "done")]
    # Partials arrive in batches (throttled), not one signal per item.
    assert all(isinstance(p, tuple) for p in partials)
    assert sum(len(p) for p in partials) > len(partials)


def test_shutdown_cancels_queued_work(qtbot):
    eng = Engine()
    eng.submit(SlowJob())
    eng.submit(SlowJob())
    qtbot.wait(50)
    t0 = time.monotonic()
    assert eng.shutdown()
    assert time.monotonic() - t0 < 2.0


N_CYCLES = 1000


class _Cycle:
    """Cyclic garbage whose finalizer records the thread it runs on."""

    threads: list[str] = []

    def __init__(self):
        self.me = self

    def __del__(self):
        _Cycle.threads.append(threading.current_thread().name)


@dataclass(frozen=True)
class MakeGarbageAndForget:
    title: str = "garbage"

    def run(self, ctx, ws):
        for _ in range(N_CYCLES):  # more than gc's first-generation threshold (700)
            _Cycle()
        ws.forget()  # releases model memory; must not collect cycles on this thread
        return threading.current_thread().name


def test_cycles_are_collected_on_the_gui_thread_while_an_engine_runs(qtbot):
    import gc

    _Cycle.threads.clear()
    eng = Engine()
    rec = Recorder(eng.worker)
    try:
        assert not gc.isenabled()
        eng.submit(MakeGarbageAndForget())
        qtbot.waitUntil(lambda: len(rec.results) == 1, timeout=5000)
        engine_thread = rec.results[0][1]
        qtbot.waitUntil(lambda: len(_Cycle.threads) == N_CYCLES, timeout=5000)  # the GUI thread's timer collects
        assert set(_Cycle.threads) == {threading.main_thread().name} != {engine_thread}
    finally:
        assert eng.shutdown()
    assert gc.isenabled()
