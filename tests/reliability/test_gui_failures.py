"""A job that fails inside the engine (a bug, out of memory, bad input) in any tab leaves no
widget disabled and no progress bar showing; the engine thread lives on and the next job runs."""

from __future__ import annotations

import pytest

from engine.core import memory_guard, paths
from engine.jobs.evaluation_suite import EvaluationSuiteJob
from engine.jobs.image import BenchmarkJob, PredictJob, QuantizeJob
from engine.jobs.language import GenerateJob
from tests.gui.test_app import drop_files, idle


def _boom(self, ctx, ws):
    ctx.progress(0.3, "about to fail")
    raise RuntimeError(f"boom in {type(self).__name__}")


def fail(monkeypatch, job_cls):
    monkeypatch.setattr(job_cls, "run", _boom)


def wait_failed(qtbot, window, text: str) -> None:
    qtbot.waitUntil(lambda: idle(window) and window.last_error is not None and text in window.last_error, timeout=20000)
    qtbot.waitUntil(lambda: not window.progress.isVisible(), timeout=2000)
    assert window.engine.thread.isRunning()
    window.last_error = None


def test_a_failure_in_each_tab_leaves_the_ui_usable(qtbot, window, monkeypatch):
    q, b, e, inf = window.quantize_tab, window.benchmark_tab, window.evaluation_tab, window.inference_tab
    with monkeypatch.context() as m:
        for cls in (QuantizeJob, BenchmarkJob, EvaluationSuiteJob, PredictJob, GenerateJob):
            fail(m, cls)
        q.start()
        wait_failed(qtbot, window, "boom in QuantizeJob")
        assert q.run_btn.isEnabled() and not q.cancel_btn.isEnabled()

        b.start_benchmark()
        wait_failed(qtbot, window, "boom in BenchmarkJob")
        assert all(x.isEnabled() for x in (b.bench_btn, b.eval_btn, b.demo_btn)) and not b.cancel_btn.isEnabled()

        e.start()
        wait_failed(qtbot, window, "boom in EvaluationSuiteJob")
        assert e.run_btn.isEnabled() and not e.cancel_btn.isEnabled()

        drop_files(inf.drop, [paths.SAMPLES_DIR / "digit_3.png"])
        qtbot.waitUntil(lambda: idle(window) and "boom in PredictJob" in inf.message.text(), timeout=20000)
        assert inf.drop.isEnabled() and not window.progress.isVisible()

        t = inf.text_generation
        if not t.models():
            pytest.skip("no language model listed")
        t.start_generation()
        wait_failed(qtbot, window, "boom in GenerateJob")
        assert t.generate_btn.isEnabled() and not t.stop_btn.isEnabled()

    # Out of memory (the memory guard) inside a real quantize job: same clean state.
    with monkeypatch.context() as m:
        m.setattr(memory_guard, "available_memory_bytes", lambda: 1)
        q.start()
        wait_failed(qtbot, window, "not enough memory to quantize")
        assert q.run_btn.isEnabled() and not q.cancel_btn.isEnabled()

    # The engine thread survived all of it: a real job runs to the end.
    q.recipe.setCurrentText("int8")
    q.start()
    qtbot.waitUntil(lambda: q.variants.rowCount() == 1 and idle(window), timeout=20000)
    assert window.last_error is None and not window.progress.isVisible()


def test_cancel_a_quantize_from_the_gui_leaves_no_partial_variant(qtbot, window, monkeypatch):
    """The job is held at its first progress report until Cancel is clicked."""
    import threading
    import time

    from PySide6.QtCore import Qt

    from engine.image.quant import apply

    q = window.quantize_tab
    started, release = threading.Event(), threading.Event()
    real = apply.quantize_model

    def held(model, recipe, progress=None, should_stop=None, **kw):
        started.set()
        deadline = time.monotonic() + 20  # never hang the suite if Cancel is lost
        while not (should_stop and should_stop()) and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        return real(model, recipe, progress, should_stop, **kw)

    with monkeypatch.context() as m:  # not monkeypatch.undo(): that would also drop the test's data dir
        m.setattr("engine.jobs.image.quantize_model", held)
        q.recipe.setCurrentText("int4")
        q.start()
        qtbot.waitUntil(started.is_set, timeout=20000)
        assert q.cancel_btn.isEnabled() and not q.run_btn.isEnabled()
        t0 = time.monotonic()
        qtbot.mouseClick(q.cancel_btn, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(
            lambda: idle(window) and q.run_btn.isEnabled() and not window.progress.isVisible(), timeout=5000
        )
        assert time.monotonic() - t0 < 1.0 and release.is_set()
        variants = paths.variants_dir()
        assert not variants.exists() or not [p.name for p in variants.iterdir()]  # no bundle, no .tmp- sibling
    q.start()
    qtbot.waitUntil(lambda: q.variants.rowCount() == 1 and idle(window), timeout=20000)
