"""The protocol every job meets: a frozen dataclass of settings with a title and ``run``."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from engine.runtime.context import JobContext
from engine.runtime.workspace import Workspace


@runtime_checkable
class Job(Protocol):
    """A unit of work the GUI's engine thread, the CLI and the service run.

    ``run`` reports through ``ctx`` (progress, partial results), polls ``ctx.should_stop()``
    between batches, layers or tokens, returns a frozen result, never prints and never
    touches Qt.
    """

    title: str

    def run(self, ctx: JobContext, ws: Workspace) -> Any: ...
