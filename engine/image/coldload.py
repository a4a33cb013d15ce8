"""Cold model loads that really read from disk.

Dropping the in-process bundle cache is not enough: the operating system
keeps recently read files in its page cache, so a "cold" load right after a
quantization or an evaluation would read memory, not disk. On Linux the
bundle's files are evicted with ``posix_fadvise(DONTNEED)`` first (their
pages are clean: bundles are fsynced when saved) and the fraction of pages
still resident is measured with ``mincore``, so every run records how cold
its load was. macOS offers no unprivileged way to evict one file's pages;
there the run records ``page_cache_evicted = False``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.measure.memory import MemoryPoint, MemorySampler


@dataclass(frozen=True)
class LoadMeasurement:
    """How long a load from disk took and what memory it used.

    Attributes:
        seconds: wall time of reading, building and evaluating the model.
        page_cache_evicted: the bundle's files were evicted from the OS page cache first.
        resident_fraction: fraction of the files' pages still cached when the load began
            (None where it cannot be measured).
        peak_memory: MLX's peak memory during the load, bytes.
        peak_rss: the process's largest sampled RSS during the load, bytes.
        timeline: (t, MLX active memory, RSS) samples through the load.
    """

    seconds: float
    page_cache_evicted: bool
    resident_fraction: float | None
    peak_memory: int
    peak_rss: int
    timeline: tuple[MemoryPoint, ...] = ()


def evict_page_cache(files: Iterable[str | Path]) -> bool:
    """Ask the OS to drop the files' cached pages; True when every file was advised."""
    if not hasattr(os, "posix_fadvise"):
        return False
    ok = True
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            ok = False
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            ok = False
        finally:
            os.close(fd)
    return ok


@lru_cache(maxsize=1)
def _libc():
    lib = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return lib


def resident_fraction(files: Iterable[str | Path]) -> float | None:
    """Fraction of the files' pages in the page cache (Linux ``mincore``), None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    lib = _libc()
    page = mmap.PAGESIZE
    resident = total = 0
    for f in files:
        size = os.path.getsize(f)
        if size == 0:
            continue
        fd = os.open(f, os.O_RDONLY)
        try:
            addr = lib.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                pages = (size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                if lib.mincore(addr, size, vec) != 0:
                    return None
                resident += sum(b & 1 for b in vec)
                total += pages
            finally:
                lib.munmap(addr, size)
        finally:
            os.close(fd)
    return resident / total if total else None


def bundle_files(path: str | Path) -> list[Path]:
    return [f for f in sorted(Path(path).iterdir()) if f.is_file()]


def cold_load(ws, spec: str | Path):
    """Load ``spec`` from disk as the first load of a fresh process would.

    Args:
        ws: the engine Workspace (its cached copy of the bundle is dropped first).
        spec: a bundle directory or 'default'.

    Returns:
        (bundle, LoadMeasurement).
    """
    import mlx.core as mx

    from engine.image.bundle import resolve_model_path

    ws.forget(spec)
    files = bundle_files(resolve_model_path(spec)) if resolve_model_path(spec).is_dir() else []
    evicted = bool(files) and evict_page_cache(files)
    fraction = resident_fraction(files) if files else None
    mx.reset_peak_memory()
    with MemorySampler() as sampler:
        t0 = time.perf_counter()
        bundle = ws.bundle(spec)
        seconds = time.perf_counter() - t0
    return bundle, LoadMeasurement(
        seconds=seconds,
        page_cache_evicted=evicted,
        resident_fraction=fraction,
        peak_memory=int(mx.get_peak_memory()),
        peak_rss=sampler.peak_rss,
        timeline=sampler.points,
    )
