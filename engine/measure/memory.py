"""A memory timeline sampled on a helper thread while the engine thread works.

The helper thread calls exactly one MLX function, ``mx.get_active_memory``.
In MLX's allocators (``backend/no_gpu/allocator.cpp``, ``backend/metal/allocator.h``)
it returns one ``size_t`` counter without touching a stream, an array or a
lock, so reading it from another thread cannot disturb the engine thread's
work (at worst it reads a value one allocation old). Everything else the
sampler reads is the process's resident set size.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from engine.measure.environment import rss_bytes


@dataclass(frozen=True)
class MemoryPoint:
    """Memory at ``t_ms`` milliseconds after the sampler started."""

    t_ms: float
    active_memory: int
    rss: int


class MemorySampler:
    """Context manager: samples (time, MLX active memory, RSS) every ``interval_s``.

    Always records a first point on entry and a last one on exit, so even a
    phase shorter than the interval has a start and an end.
    """

    def __init__(self, interval_s: float = 0.002, max_points: int = 100_000):
        self.interval_s = interval_s
        self.max_points = max_points
        self._points: list[MemoryPoint] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _sample(self) -> None:
        import mlx.core as mx

        if len(self._points) < self.max_points:
            t = (time.perf_counter() - self._t0) * 1000.0
            self._points.append(MemoryPoint(t, int(mx.get_active_memory()), rss_bytes()))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self._t0 = time.perf_counter()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def points(self) -> tuple[MemoryPoint, ...]:
        return tuple(self._points)

    @property
    def peak_rss(self) -> int:
        return max((p.rss for p in self._points), default=0)


def release_memory() -> None:
    """Return the memory of dropped models: a cyclic collection, then MLX's buffer cache.

    The collection runs only while automatic garbage collection is on. The GUI turns it off
    and collects on its own thread (gui/engine_thread.py): a collection on the engine thread
    could finalize Qt objects there, and PySide then deadlocks against the GUI thread.
    """
    import gc

    import mlx.core as mx

    if gc.isenabled():
        gc.collect()
    mx.clear_cache()
