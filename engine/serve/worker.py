"""The service's engine thread: one long-lived thread owns the model and runs all MLX work.

MLX streams are thread-local (lazy arrays built on one thread cannot be evaluated on
another), so the model is loaded on this thread and every request is queued to it.
The HTTP side only puts tasks on the queue and receives immutable results: numpy-free
frozen dataclasses through ``concurrent.futures.Future`` (classify, call) or a sink
callback (generate). Requests are served in arrival order; consecutive classify
requests are stacked into one batch (micro-batching: whatever is queued, plus what
arrives within a short window, up to ``max_batch``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.measure.evaluate.classification import Prediction
from engine.serve.backends import ModelInfo, load_backend
from engine.serve.generation import (
    GenerationFailed,
    GenerationFinished,
    GenerationRequest,
    GenerationStarted,
    StopMatcher,
    TextDelta,
)


class ServiceBusy(Exception):
    """The queue is full (HTTP 503)."""


class ServiceStopped(Exception):
    """The engine thread is stopping or has stopped (HTTP 503)."""


@dataclass(frozen=True)
class ClassifyResult:
    predictions: tuple[Prediction, ...]
    inference_ms: float  # the forward pass of the whole batch
    queue_ms: float  # waiting for the engine thread
    batch_size: int  # how many requests shared that forward pass
    sequence: int  # 1, 2, 3 ... in the order the engine thread served requests


@dataclass(frozen=True)
class WorkerStats:
    alive: bool
    queued: int
    busy: bool
    served: int
    batches: int
    largest_batch: int
    generations: int
    cancelled: int
    failed: int


@dataclass
class _Task:
    kind: str  # "classify", "generate" or "call"
    payload: Any
    future: Future | None = None
    sink: Callable[[object], None] | None = None
    cancel: threading.Event | None = None
    enqueued: float = 0.0


_STOP = _Task("stop", None)


class InferenceWorker:
    """Owns the served model on its own thread.

    Args:
        spec: the model to load (see ``backends.model_kind``).
        batch_window_ms, max_batch, max_queue: see ``ServeSettings``.
        loader: builds the backend from ``spec``; called on the engine thread.
    """

    def __init__(
        self,
        spec: str,
        *,
        batch_window_ms: float = 2.0,
        max_batch: int = 32,
        max_queue: int = 256,
        loader: Callable[[str], Any] = load_backend,
    ):
        self.spec = spec
        self.batch_window_s = max(0.0, batch_window_ms) / 1000.0
        self.max_batch = max(1, max_batch)
        self.max_queue = max(1, max_queue)
        self._loader = loader
        self._queue: queue.Queue[_Task] = queue.Queue()
        self._pushback: _Task | None = None
        self._loaded: Future[ModelInfo] = Future()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._current: _Task | None = None
        self._backend = None
        self._sequence = 0
        self._counts = {"batches": 0, "largest_batch": 0, "generations": 0, "cancelled": 0, "failed": 0}

    # -- any thread ----------------------------------------------------------------------
    def start(self) -> Future[ModelInfo]:
        """Start the thread; the returned future resolves once the model is loaded (or failed to)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="mqs-serve-engine", daemon=True)
            self._thread.start()
        return self._loaded

    @property
    def info(self) -> ModelInfo:
        return self._loaded.result()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def classify(self, image: np.ndarray, top_k: int) -> Future[ClassifyResult]:
        """Queue one preprocessed (H, W, C) float32 image."""
        return self._put(_Task("classify", (np.ascontiguousarray(image, dtype=np.float32), int(top_k)), Future()))

    def generate(self, request: GenerationRequest, sink: Callable[[object], None]) -> threading.Event:
        """Queue a generation; ``sink`` receives GenerationStarted, TextDelta..., then GenerationFinished
        or GenerationFailed, on the engine thread. Set the returned event to stop it between tokens."""
        cancel = threading.Event()
        self._put(_Task("generate", request, None, sink, cancel))
        return cancel

    def call(self, fn: Callable[[Any], Any]) -> Future:
        """Run ``fn(backend)`` on the engine thread, in queue order."""
        return self._put(_Task("call", fn, Future()))

    def stats(self) -> WorkerStats:
        c = self._counts
        return WorkerStats(
            alive=self.alive(),
            queued=self._queue.qsize(),
            busy=self._current is not None,
            served=self._sequence,
            batches=c["batches"],
            largest_batch=c["largest_batch"],
            generations=c["generations"],
            cancelled=c["cancelled"],
            failed=c["failed"],
        )

    def request_stop(self) -> None:
        """Begin stopping without waiting: cancel the running generation; queued requests will fail."""
        if self._stopping.is_set() and self._loaded.done():
            return
        self._stopping.set()
        current = self._current
        if current is not None and current.cancel is not None:
            current.cancel.set()
        self._queue.put(_STOP)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop, fail queued requests and unload the model; True if the thread ended within ``timeout``."""
        self.request_stop()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _put(self, task: _Task) -> Any:
        if self._stopping.is_set() or self._loaded.done() and self._loaded.exception() is not None:
            raise ServiceStopped("the service is stopping")
        if self._queue.qsize() >= self.max_queue:
            raise ServiceBusy(f"the service is busy: {self.max_queue} requests are already waiting; retry shortly")
        task.enqueued = time.perf_counter()
        self._queue.put(task)
        return task.future if task.future is not None else task

    # -- the engine thread -----------------------------------------------------------------
    def _main(self) -> None:
        try:
            try:
                self._backend = self._loader(self.spec)
                self._loaded.set_result(self._backend.info)
            except BaseException as exc:  # report load errors to whoever waits on start()
                self._stopping.set()
                self._loaded.set_exception(exc)
                return
            while True:
                task = self._next()
                if task is _STOP or self._stopping.is_set():
                    self._pushback = task  # fails with the rest of the queue: stopping is prompt
                    break
                self._current = task
                try:
                    if task.kind == "classify":
                        self._run_classify(self._collect_batch(task))
                    elif task.kind == "generate":
                        self._run_generate(task)
                    else:
                        self._run_call(task)
                finally:
                    self._current = None
        finally:
            self._fail_pending()
            self._unload()

    def _next(self, timeout: float | None = None) -> _Task:
        if self._pushback is not None:
            task, self._pushback = self._pushback, None
            return task
        return self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()

    def _collect_batch(self, first: _Task) -> list[_Task]:
        batch = [first]
        deadline = time.perf_counter() + self.batch_window_s
        shape = first.payload[0].shape
        while len(batch) < self.max_batch and not self._stopping.is_set():
            try:
                task = self._next(deadline - time.perf_counter())
            except queue.Empty:
                break
            if task.kind != "classify" or task.payload[0].shape != shape:
                self._pushback = task  # keeps arrival order: it runs right after this batch
                break
            batch.append(task)
        return batch

    def _run_classify(self, batch: list[_Task]) -> None:
        started = time.perf_counter()
        try:
            x = np.stack([t.payload[0] for t in batch])
            predictions = self._backend.classify(x, [t.payload[1] for t in batch])
        except Exception as exc:
            self._counts["failed"] += len(batch)
            for t in batch:
                t.future.set_exception(exc)
            return
        inference_ms = (time.perf_counter() - started) * 1000.0
        self._counts["batches"] += 1
        self._counts["largest_batch"] = max(self._counts["largest_batch"], len(batch))
        for t, preds in zip(batch, predictions, strict=True):
            self._sequence += 1
            queue_ms = (started - t.enqueued) * 1000.0
            t.future.set_result(ClassifyResult(tuple(preds), inference_ms, queue_ms, len(batch), self._sequence))

    def _run_call(self, task: _Task) -> None:
        try:
            task.future.set_result(task.payload(self._backend))
        except Exception as exc:
            task.future.set_exception(exc)

    def _run_generate(self, task: _Task) -> None:
        request: GenerationRequest = task.payload
        cancel = task.cancel

        def emit(event: object) -> None:
            try:
                task.sink(event)
            except Exception:  # the receiving side is gone (its event loop closed)
                cancel.set()

        if cancel.is_set():
            self._counts["cancelled"] += 1
            return
        self._sequence += 1
        started = time.perf_counter()
        try:
            tokens = self._backend.prompt_tokens(request)
            if not tokens:
                raise UserError("the prompt is empty")
        except UserError as exc:
            self._counts["failed"] += 1
            emit(GenerationFailed(str(exc), 400))
            return
        emit(GenerationStarted(len(tokens)))
        matcher = StopMatcher(request.params.stop)
        produced, finish = 0, "length"
        try:
            for piece in self._backend.generate(tokens, request.params, cancel.is_set):
                produced += 1
                text, hit_stop = matcher.feed(piece.text)
                if text:
                    emit(TextDelta(text))
                if hit_stop:
                    finish = "stop"
                    break
                if piece.finish_reason is not None:
                    finish = piece.finish_reason
            else:
                tail = matcher.flush()
                if tail:
                    emit(TextDelta(tail))
        except Cancelled:
            self._counts["cancelled"] += 1
            if self._stopping.is_set():
                emit(GenerationFailed("the service stopped during generation", 503))
            return
        except Exception as exc:  # a bug or an MLX error: report it, keep the thread alive
            self._counts["failed"] += 1
            emit(GenerationFailed(f"{type(exc).__name__}: {_first_line(exc)}", 500))
            return
        self._counts["generations"] += 1
        emit(GenerationFinished(finish, len(tokens), produced, time.perf_counter() - started))

    def _fail_pending(self) -> None:
        stopped = ServiceStopped("the service stopped before this request ran")
        pending = [self._pushback] if self._pushback is not None else []
        self._pushback = None
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for task in pending:
            if task.future is not None and not task.future.done():
                task.future.set_exception(stopped)
            elif task.sink is not None:
                try:
                    task.sink(GenerationFailed(str(stopped), 503))
                except Exception:
                    pass

    def _unload(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
        del backend
        from engine.measure.memory import release_memory

        release_memory()
        import mlx.core as mx

        # MLX needs its per-thread streams destroyed before the thread ends, or the process
        # may abort at exit ("terminate called without an active exception").
        mx.clear_streams()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
