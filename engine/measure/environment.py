"""What a measurement ran on: device, versions, machine; and process memory."""

from __future__ import annotations

import os
import platform
import resource
import sys
from functools import lru_cache

import engine

_statm = {"pid": -1, "fd": -1}


def rss_bytes() -> int:
    """Current resident set size of this process, in bytes.

    Linux: one ``pread`` of a kept-open /proc/self/statm (~4 us, against ~30 us
    for open/read/close, which matters inside a timing loop). macOS:
    ``proc_pidinfo``. Elsewhere the peak RSS stands in.
    """
    if sys.platform.startswith("linux"):
        try:
            pid = os.getpid()
            if _statm["pid"] != pid:  # first call, or a forked child whose /proc/self moved
                _statm["fd"] = os.open("/proc/self/statm", os.O_RDONLY)
                _statm["pid"] = pid
            return int(os.pread(_statm["fd"], 128, 0).split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return peak_rss_bytes()
    if sys.platform == "darwin":
        rss = _darwin_rss()
        if rss is not None:
            return rss
    return peak_rss_bytes()


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@lru_cache(maxsize=1)
def _libproc():
    import ctypes
    import ctypes.util

    path = ctypes.util.find_library("proc")
    return ctypes.CDLL(path) if path else None


def _darwin_rss() -> int | None:
    """pti_resident_size of struct proc_taskinfo (PROC_PIDTASKINFO = 4)."""
    import ctypes

    try:
        lib = _libproc()
        if lib is None:
            return None
        buf = (ctypes.c_uint64 * 12)()  # proc_taskinfo is 96 bytes; the second field is the resident size
        n = lib.proc_pidinfo(os.getpid(), 4, ctypes.c_uint64(0), buf, ctypes.sizeof(buf))
        return int(buf[1]) if n >= 16 else None
    except (OSError, AttributeError):
        return None


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _cpu_name() -> str:
    if sys.platform == "darwin":
        try:
            import subprocess

            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def environment() -> dict:
    """Recorded with every run so numbers can be compared honestly later."""
    import mlx.core as mx

    device = mx.default_device()
    info = {
        "app_version": engine.__version__,
        "mlx_version": mx.__version__,
        "device": getattr(device.type, "name", str(device)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count() or 0,
    }
    try:
        if mx.metal.is_available():
            info["gpu"] = str(mx.metal.device_info().get("architecture", "metal"))
        elif hasattr(mx, "cuda") and mx.cuda.is_available():
            info["gpu"] = "cuda"
    except (AttributeError, RuntimeError):
        pass
    return info
