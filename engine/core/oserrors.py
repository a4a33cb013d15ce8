"""Turn OS-level failures into one line naming the path and the cause in words.

A full disk, a read-only target or a file standing where a folder should be reach the app as
``OSError`` (errno), as MLX's ``RuntimeError("[write] Unable to write N bytes to file.")`` with no
path, or as SQLite's ``OperationalError("disk I/O error")``. :func:`as_user_error` is the one place
that knows them all: the CLI's error printer, the GUI's error route, the service and the atomic
writers of :mod:`engine.core.fileio` pass what they catch through it.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from engine.core.errors import UserError

# errno -> the cause in words, as a user would say it.
CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EEXIST: "a file stands where a folder is needed",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files",
    errno.EIO: "input/output error (the disk or network share failed)",
    errno.EFBIG: "the file is too large for this file system",
    errno.EXDEV: "the target is on another file system",
    errno.ENOMEM: "out of memory",
}
# Below this many free bytes a write failure without an errno is taken for a full disk.
NEARLY_FULL_BYTES = 64 * 1024 * 1024
_WRITE_MARKERS = ("[write]", "unable to write", "failed to open file", "[save")
_SQLITE_CAUSES = {
    "disk i/o error": "input/output error (the disk is full or failed)",
    "database or disk is full": "no space left on device",
    "attempt to write a readonly database": "the file system is read-only",
    "unable to open database file": "cannot open the file (missing folder or no permission)",
}


def _shown(path: str | Path | None) -> str | None:
    return None if path in (None, "") else str(path)


def _free_bytes(path: str | Path | None) -> int | None:
    p = Path(path) if path else None
    while p is not None and not p.exists():
        p = p.parent if p != p.parent else None
    try:
        return shutil.disk_usage(p).free if p is not None else None
    except OSError:
        return None


def as_user_error(exc: BaseException, path: str | Path | None = None, action: str = "writing") -> UserError | None:
    """A one-line :class:`UserError` for an OS-level failure, or None when ``exc`` is not one.

    Args:
        exc: what was caught.
        path: the file or folder being written or read, when the caller knows it better than ``exc``
            (a temporary sibling is named by its final path this way).
        action: "writing" or "reading", for the message.
    """
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OSError) and exc.errno in CAUSES:
        where = _shown(path) or _shown(exc.filename) or "a file"
        cause = CAUSES[exc.errno]
        if exc.errno in (errno.EEXIST, errno.ENOTDIR) and exc.filename and not path:
            return UserError(f"{exc.filename}: is a file, so no folder can be made there or inside it", exc.filename)
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            return UserError(f"{cause} (at {exc.filename or where}) while {action} {where}", where)
        return UserError(f"{cause} while {action} {where}", where)
    if isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _WRITE_MARKERS):
        where = _shown(path) or "a file"
        free = _free_bytes(path)
        if free is not None and free < NEARLY_FULL_BYTES:
            cause = "no space left on device"
        else:
            cause = "the write failed (disk full, read-only or removed)"
        return UserError(f"{cause} while {action} {where}", where)
    if type(exc).__name__ == "OperationalError" and type(exc).__module__.startswith("sqlite3"):
        text = str(exc).lower()
        for key, cause in _SQLITE_CAUSES.items():
            if key in text:
                where = _shown(path) or _results_db()
                return UserError(f"{cause} while {action} the results database {where}", where)
        return None
    if isinstance(exc, OverflowError):
        where = _shown(path)
        message = f"a size is too large to allocate ({_first_line(exc)})"
        return UserError(f"{where}: {message}" if where else message, where)
    if isinstance(exc, MemoryError):
        return UserError("out of memory; try a smaller batch, image or model", _shown(path))
    return None


def describe(exc: BaseException, path: str | Path | None = None, action: str = "writing") -> str:
    """One line for any exception: the translated message, else 'Type: first line'."""
    translated = as_user_error(exc, path, action)
    if translated is not None:
        return str(translated)
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _results_db() -> str:
    try:
        from engine.core import paths

        return str(paths.user_data_dir() / "results.sqlite3")
    except OSError:
        return "results.sqlite3"
