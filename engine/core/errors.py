"""Errors the engine raises for bad input, as opposed to bugs."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: a file, a setting, a dataset.

    The message is one line that names the thing and the problem; the CLI
    prints it without a traceback and the GUI shows it in a dialog.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        if path is not None and str(path) not in message:
            message = f"{path}: {message}"
        super().__init__(message)


class Cancelled(Exception):
    """Raised inside a job when its should_stop() turned true."""
