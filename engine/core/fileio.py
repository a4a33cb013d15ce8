"""Atomic file writes, and the one rule for what an output folder may replace.

Files: a temporary sibling, fsync, then rename over the target. Folders: the app writes only a path
that does not exist, an empty folder, or a folder it wrote itself (it carries ``MARKER``), and
replaces the last only when asked to (``--overwrite``, or a confirmation in the GUI). It never
writes over its input, a folder holding its input, the current folder or a file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.core.errors import UserError

#: The file every folder this app writes carries; only such a folder is ever replaced.
MARKER = ".mlx-quant-studio"
# Bundles written before the marker existed hold exactly these two files.
_LEGACY_BUNDLE_FILES = {"config.json", "model.safetensors"}


class OutputExists(UserError):
    """The output folder holds a model this app wrote before; replacing it needs ``overwrite``."""


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    with _os_errors_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; the user's files follow their umask like any other
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            with _os_errors_named(path):
                f.flush()
                os.fsync(f.fileno())
        with _os_errors_named(path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _os_errors_named(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """Re-raise an OS-level failure as one line naming ``path`` (see engine.core.oserrors)."""
    from engine.core.oserrors import as_user_error

    try:
        yield
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, UserError):
            raise
        where = path
        if tmp is not None:  # name the file being written under its final name
            written = [p for p in tmp.iterdir() if p.is_file()] if tmp.is_dir() else []
            name = Path(exc.filename).name if isinstance(exc, OSError) and exc.filename else None
            if name is None and written:
                name = max(written, key=lambda p: p.stat().st_mtime_ns).name
            where = path / name if name and name != tmp.name else path
        translated = as_user_error(exc, where)
        if translated is None:
            raise
        raise translated from exc


def write_csv(path: str | Path, header: list[str], rows: Iterable[Iterable]) -> Path:
    """Write raw values under a header row, atomically."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    return Path(path)


def written_by_app(path: Path) -> bool:
    """True for a folder this app wrote: it carries the marker (or is a bundle from before it)."""
    if (path / MARKER).is_file():
        return True
    names = {p.name for p in path.iterdir()}
    if names != _LEGACY_BUNDLE_FILES:
        return False
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and all(k in cfg for k in ("arch", "labels", "preprocessing"))


def _describe(entries: list[Path], most: int = 3) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in entries)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def check_output_dir(path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Resolve ``path`` and raise :class:`UserError` unless the app may write a folder there.

    Allowed: a path that does not exist, an empty folder, or (with ``overwrite``) a folder this app
    wrote. Refused: a file, a folder holding anything else, the current folder or one above it, and
    any of ``inputs`` or a folder holding one. A folder this app wrote, without ``overwrite``, raises
    :class:`OutputExists`.
    """
    path = Path(path).expanduser().resolve()
    for item in inputs:
        src = Path(item).expanduser().resolve()
        if src == path:
            raise UserError("is the input model; choose another output folder", path)
        if src.is_relative_to(path):
            raise UserError(f"holds the input ({src.name}); choose another output folder", path)
        if path.is_relative_to(src) and src.is_dir():
            raise UserError(f"lies inside the input ({src}); choose another output folder", path)
    if Path.cwd().resolve().is_relative_to(path):
        raise UserError("is the current folder or holds it; choose a new folder", path)
    if not path.exists() and not path.is_symlink():
        return path
    if not path.is_dir():
        raise UserError("is a file, not a folder; choose a new folder", path)
    entries = list(path.iterdir())
    if not entries:
        return path
    if written_by_app(path):
        if overwrite:
            return path
        raise OutputExists("already holds a model this app wrote; pass --overwrite to replace it", path)
    raise UserError(f"holds files this app did not write ({_describe(entries)}); choose a new or empty folder", path)


def write_marker(folder: Path, what: str) -> None:
    """Mark ``folder`` as written by this app (the only kind of folder it will ever replace)."""
    (folder / MARKER).write_text(json.dumps({"written_by": "mlx-quant-studio", "content": what}) + "\n")


def claim_directory(path: str | Path, what: str, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Create (or, with ``overwrite``, empty) a folder the app fills piece by piece, and mark it."""
    path = check_output_dir(path, overwrite=overwrite, inputs=inputs)
    with _os_errors_named(path):
        if path.exists() and written_by_app(path):
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        write_marker(path, what)
    return path


@contextlib.contextmanager
def atomic_directory(
    path: str | Path, what: str = "model", *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; it replaces ``path`` only if the block succeeds.

    ``path`` must pass :func:`check_output_dir` first. A folder the app wrote before is moved aside
    and removed after the rename, so a crash never leaves a half-written folder under the final name.
    """
    path = check_output_dir(path, overwrite=overwrite, inputs=inputs)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    with _os_errors_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    try:
        with _os_errors_named(path, tmp):
            yield tmp
            write_marker(tmp, what)
        with _os_errors_named(path):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
                tmp.rename(path)
            elif path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
                path.rename(old)
                tmp.rename(path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
