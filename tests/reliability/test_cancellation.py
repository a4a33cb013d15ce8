"""Cancel every kind of job part-way: it stops within a second, leaves no partial bundle
(nothing under the final name, no temporary sibling) and the next job on the same
workspace runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.core import paths
from engine.core.errors import Cancelled
from engine.image.benchmark import BenchmarkSettings
from engine.jobs.image import BenchmarkJob, EvaluateJob, ImportJob, LoadModelJob, QuantizeJob
from engine.runtime import JobContext, Workspace
from tests.reliability import corpus


class StopAfter:
    """A JobContext whose stop flag is set at the ``n``-th progress or partial report."""

    def __init__(self, n: int = 1, on: str = "progress"):
        self.n, self.on, self.count = n, on, 0
        self.event = threading.Event()
        self.set_at: float | None = None

    def _tick(self, *_):
        self.count += 1
        if self.count >= self.n and not self.event.is_set():
            self.set_at = time.monotonic()
            self.event.set()

    def context(self) -> JobContext:
        noop = lambda *a: None  # noqa: E731
        return JobContext(
            progress=self._tick if self.on == "progress" else noop,
            partial=self._tick if self.on == "partial" else noop,
            should_stop=self.event.is_set,
        )

    def seconds_since_stop(self) -> float:
        assert self.set_at is not None, "the job never reported progress, so it was never asked to stop"
        return time.monotonic() - self.set_at


def leftovers(folder: Path) -> list[str]:
    """Temporary or moved-aside siblings that atomic_directory/atomic_open leave only on a crash."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name or ".old-" in p.name)


def run_cancelled(job, ws, stopper: StopAfter) -> None:
    with pytest.raises(Cancelled):
        job.run(stopper.context(), ws)
    assert stopper.seconds_since_stop() < 1.0


def then_next_job_runs(ws) -> None:
    card = LoadModelJob("default").run(JobContext(), ws)
    assert card.params > 0
    out = EvaluateJob("default", limit=8, store=False).run(JobContext(), ws)
    assert len(out.result.ids) == 8


def test_cancel_import(tmp_path):
    ws = Workspace()
    out = tmp_path / "imp ü"
    job = ImportJob("small_cnn", str(corpus.default_weights_path()), str(out))
    run_cancelled(job, ws, StopAfter(2))
    assert not out.exists() and leftovers(tmp_path) == []
    then_next_job_runs(ws)


def test_cancel_quantize(tmp_path):
    ws = Workspace()
    out = tmp_path / "q"
    run_cancelled(QuantizeJob("default", "int4", str(out)), ws, StopAfter(2))
    assert not out.exists() and leftovers(tmp_path) == []
    assert ws.store.list() == []  # no run recorded for a variant that was never saved
    then_next_job_runs(ws)


def test_cancel_evaluate():
    ws = Workspace()
    run_cancelled(EvaluateJob("default", batch_size=8), ws, StopAfter(2))
    then_next_job_runs(ws)


def test_cancel_benchmark():
    ws = Workspace()
    settings = BenchmarkSettings(batch_size=1, iters=100000, warmup=0)
    run_cancelled(BenchmarkJob("default", settings, cold_load=False), ws, StopAfter(5, on="partial"))
    then_next_job_runs(ws)


def test_cancel_sweep_keeps_finished_rows_and_no_partial_bundle(tmp_path):
    from engine.jobs.sweep import SweepJob

    ws = Workspace()
    out = tmp_path / "sweep ü"
    bench = BenchmarkSettings(batch_size=1, iters=3, warmup=0)
    # Stop as the second variant starts: the first row (fp32) is finished and must stay.
    stopper = StopAfter(1, on="partial")
    rows = []

    def on_partial(payload):
        from engine.jobs.sweep import SweepRow

        if isinstance(payload, SweepRow):
            rows.append(payload)
            stopper._tick()

    ctx = JobContext(partial=on_partial, should_stop=stopper.event.is_set)
    job = SweepJob("default", ("fp32", "int8", "int4"), out=str(out), bench=bench, eval_limit=16, plots=False)
    with pytest.raises(Cancelled):
        job.run(ctx, ws)
    assert stopper.seconds_since_stop() < 1.0
    assert len(rows) == 1
    assert leftovers(out) == [] and leftovers(tmp_path) == []
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 2  # header and the finished row
    models = sorted(p.name for p in (out / "models").iterdir()) if (out / "models").exists() else []
    assert all((out / "models" / m / "model.safetensors").exists() for m in models)
    then_next_job_runs(ws)


def test_cancel_finetune(tmp_path):
    from engine.image.quant.recover import FinetuneSettings
    from engine.jobs.quant import FinetuneJob

    ws = Workspace()
    out = tmp_path / "ft"
    settings = FinetuneSettings(recipe="int4", epochs=50, batch_size=8)
    job = FinetuneJob("default", settings, data="default-val", limit=64, out=str(out), store=False)
    run_cancelled(job, ws, StopAfter(3))
    assert not out.exists() and leftovers(tmp_path) == []
    then_next_job_runs(ws)


def test_cancel_generate_and_language_model_quantize(tmp_path):
    from engine.jobs.language import GenerateJob, QuantizeLanguageModelJob
    from engine.llm.generate import GenerationSettings

    ws = Workspace()
    lm = str(paths.DEFAULT_LM_DIR)
    stopper = StopAfter(2, on="partial")
    job = GenerateJob((lm, lm), "Once upon a time", GenerationSettings(max_tokens=100000))
    t0 = time.monotonic()
    out = job.run(stopper.context(), ws)
    assert stopper.seconds_since_stop() < 1.0
    assert len(out.results) == 1 and out.results[0].finish_reason == "stopped"  # the second model never starts
    assert time.monotonic() - t0 < 30
    q_out = tmp_path / "lm q"
    run_cancelled(QuantizeLanguageModelJob(lm, "int4", str(q_out), store=False), ws, StopAfter(2))
    assert not q_out.exists() and leftovers(tmp_path) == []
    then_next_job_runs(ws)
