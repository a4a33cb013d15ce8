"""What a running job reports through: progress, partial results, cancellation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.core.errors import Cancelled


class JobContext:
    """Progress, partial results and cancellation for one job.

    The CLI uses it directly; the GUI's engine worker passes callbacks that
    emit Qt signals carrying the job id.
    """

    def __init__(
        self,
        progress: Callable[[float, str], None] | None = None,
        partial: Callable[[Any], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        self._progress = progress
        self._partial = partial
        self._should_stop = should_stop

    def progress(self, fraction: float, message: str = "") -> None:
        if self._progress is not None:
            self._progress(max(0.0, min(1.0, float(fraction))), message)

    def partial(self, payload: Any) -> None:
        if self._partial is not None:
            self._partial(payload)

    def should_stop(self) -> bool:
        return bool(self._should_stop and self._should_stop())

    def check(self) -> None:
        if self.should_stop():
            raise Cancelled()

    def scaled(self, start: float, end: float, prefix: str = "") -> Callable[[float, str], None]:
        """A progress callback mapping [0, 1] onto [start, end] of this job's bar."""

        def report(fraction: float, message: str) -> None:
            self.progress(start + (end - start) * fraction, f"{prefix}{message}")

        return report
