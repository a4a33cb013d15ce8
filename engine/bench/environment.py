"""What a measurement ran on: device, versions, machine; and process memory."""

from __future__ import annotations

import os
import platform
import resource
import sys
from functools import lru_cache

import engine


def rss_bytes() -> int:
    """Current resident set size of this process (peak RSS where current is unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


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
