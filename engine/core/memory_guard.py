"""Refuse to load or quantize a model that will not fit in memory, before trying.

Loading a model the machine cannot hold ends in swapping for minutes or in the OS
killing the app, losing whatever else was open. The guard estimates the memory a step
needs from the weight files' sizes and compares it with what the OS says is available:

- loading: the weights once, plus ~30 % for the graph, activations and allocator slack;
- quantizing: the float model, a working copy and the quantized result side by side.

``available_memory_bytes`` reads ``MemAvailable`` in ``/proc/meminfo`` on Linux and
``vm_stat`` (free + inactive + speculative pages) on macOS, falling back to physical
memory (``os.sysconf`` / ``sysctl hw.memsize``). Tests monkeypatch it; the guard is off
when it returns None or ``MQS_MEMORY_GUARD=0``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from engine.core.errors import UserError

LOAD_FACTOR = 1.3
# Importing holds the file's tensors (numpy) and the built MLX model at once.
IMPORT_FACTOR = 2.3
QUANTIZE_FACTOR = 2.5


def available_memory_bytes() -> int | None:
    """Memory the OS can give this process now without swapping; None if unknown."""
    if sys.platform.startswith("linux"):
        try:
            text = Path("/proc/meminfo").read_text()
        except OSError:
            text = ""
        m = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.MULTILINE)
        if m:
            return int(m.group(1)) * 1024
    if sys.platform == "darwin":
        found = _vm_stat_available()
        if found is not None:
            return found
    return physical_memory_bytes()


def physical_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=5).stdout
        return int(out.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _vm_stat_available() -> int | None:
    try:
        out = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_vm_stat(out)


def parse_vm_stat(text: str) -> int | None:
    """Free + inactive + speculative pages of ``vm_stat``'s output, in bytes."""
    page = re.search(r"page size of (\d+) bytes", text)
    if not page:
        return None
    pages = 0
    for key in ("Pages free", "Pages inactive", "Pages speculative"):
        m = re.search(rf"^{key}:\s+(\d+)", text, re.MULTILINE)
        if m:
            pages += int(m.group(1))
    return pages * int(page.group(1))


def files_size(files: Iterable[str | Path]) -> int:
    """Total size of the files that exist among ``files`` (folders count their files)."""
    total = 0
    for f in files:
        p = Path(f)
        if p.is_dir():
            total += sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
        elif p.is_file():
            total += p.stat().st_size
    return total


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def check_memory(weights_bytes: int, factor: float, action: str, where: str | Path) -> None:
    """Raise UserError when ``weights_bytes * factor`` exceeds the memory available now.

    Args:
        weights_bytes: size of the weights on disk.
        factor: LOAD_FACTOR or QUANTIZE_FACTOR (or another multiple of the weights).
        action: what was about to happen ("load", "quantize"), for the message.
        where: the model's file or folder, named in the message.
    """
    if os.environ.get("MQS_MEMORY_GUARD", "1") == "0" or weights_bytes <= 0:
        return
    available = available_memory_bytes()
    if available is None:
        return
    needed = int(weights_bytes * factor)
    if needed > available:
        raise UserError(
            f"not enough memory to {action} this model: it needs about {human(needed)} "
            f"({human(weights_bytes)} of weights) but only {human(available)} is available; "
            "close other apps or choose a smaller model",
            where,
        )
