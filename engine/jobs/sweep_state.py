"""What a sweep folder's ``sweep.json`` says, corrected for sweeps whose process died.

A sweep writes ``"status": "running"`` when it starts and ``complete`` or ``cancelled`` when it
ends; a process killed in between (SIGKILL, power loss) never writes the end. So the running
sweep also records its owner (host, pid and the process's start time), and reading it back
checks that the owner still lives: if not, the sweep reads as ``interrupted``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.core.errors import UserError

RUNNING, COMPLETE, CANCELLED, INTERRUPTED = "running", "complete", "cancelled", "interrupted"


@dataclass(frozen=True)
class SweepState:
    status: str  # running, complete, cancelled or interrupted
    sweep_id: str | None
    finished_rows: int | None
    meta: dict


def owner_record() -> dict:
    """Who runs the sweep: this host, this process and when it started (pids are reused)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid())}


def process_start(pid: int) -> str | None:
    """A token for the start of process ``pid`` (Linux: jiffies since boot), or None if unknown or gone."""
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return stat.rpartition(")")[2].split()[19]  # field 22, after the command name
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "alive"


def owner_alive(owner: dict) -> bool | None:
    """True or False for an owner on this host; None when it ran on another host or was not recorded."""
    if (
        not isinstance(owner, dict)
        or owner.get("host") != socket.gethostname()
        or not isinstance(owner.get("pid"), int)
    ):
        return None
    started = process_start(owner["pid"])
    if started is None:
        return False
    return owner.get("started") in (None, "alive") or started == owner.get("started")


def read_sweep_state(folder: str | Path) -> SweepState:
    """The sweep's status as it really is: a ``running`` sweep whose process is gone reads ``interrupted``.

    Raises:
        UserError: the folder has no readable sweep.json.
    """
    path = Path(folder) / "sweep.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("not a sweep folder: sweep.json is missing", folder) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"sweep.json cannot be read ({exc})", path) from None
    if not isinstance(meta, dict):
        raise UserError("sweep.json does not hold an object", path)
    status, finished = meta.get("status", RUNNING), meta.get("finished_rows")
    if status == RUNNING and owner_alive(meta.get("owner")) is False:
        status, finished = INTERRUPTED, _summary_rows(Path(folder) / "summary.csv")
    return SweepState(status, meta.get("sweep_id"), finished, meta)


def _summary_rows(path: Path) -> int:
    """Rows the sweep finished before it died (summary.csv is rewritten whole after each)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    return max(0, len([line for line in lines if line.strip()]) - 1)
