"""Partial results, dispatched by type in one table per view instead of isinstance chains."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def dispatch(payloads: Iterable[Any], handlers: dict[type, Callable[[Any], None]]) -> None:
    """Call ``handlers[type(p)]`` for each payload (a subclass finds its base's handler); ignore the rest."""
    for p in payloads:
        for cls in type(p).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                handler(p)
                break
