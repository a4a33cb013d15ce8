"""A killed sweep reads as 'interrupted' on the next read, a live one as 'running'."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.errors import UserError
from engine.jobs.sweep_state import INTERRUPTED, RUNNING, read_sweep_state

ROOT = Path(__file__).resolve().parents[2]
# What SweepJob writes when it starts (the same owner_record), then a sweep that never ends.
_SWEEPER = (
    "import json, sys, time\n"
    "from pathlib import Path\n"
    "from engine.jobs.sweep_state import owner_record\n"
    "out = Path(sys.argv[1])\n"
    "(out / 'sweep.json').write_text(json.dumps({'sweep_id': 's1', 'status': 'running', 'owner': owner_record()}))\n"
    "(out / 'summary.csv').write_text('sweep_id,index\\ns1,0\\ns1,1\\n')\n"
    "print('started', flush=True)\n"
    "time.sleep(60)\n"
)


def test_killed_sweep_reads_interrupted(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _SWEEPER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "started"
        assert read_sweep_state(tmp_path).status == RUNNING
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        state = read_sweep_state(tmp_path)
        assert state.status == INTERRUPTED and state.finished_rows == 2 and state.sweep_id == "s1"
        # the file itself is left as the dead process wrote it
        assert json.loads((tmp_path / "sweep.json").read_text())["status"] == "running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reused_pid_does_not_revive_a_dead_sweep(tmp_path):
    """Same host and pid (this process) but another start time: a different process, so interrupted."""
    import socket

    owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": "1"}
    (tmp_path / "sweep.json").write_text(json.dumps({"status": "running", "owner": owner}))
    assert read_sweep_state(tmp_path).status == INTERRUPTED


@pytest.mark.parametrize(
    "meta, status",
    [
        ({"status": "complete", "finished_rows": 3}, "complete"),
        ({"status": "cancelled", "finished_rows": 1}, "cancelled"),
        ({"status": "running"}, "running"),  # written before owners were recorded: cannot tell
        ({"status": "running", "owner": {"host": "another-machine", "pid": 1}}, "running"),
    ],
)
def test_finished_and_unknown_sweeps_read_as_written(tmp_path, meta, status):
    (tmp_path / "sweep.json").write_text(json.dumps(meta))
    assert read_sweep_state(tmp_path).status == status


def test_not_a_sweep_folder(tmp_path):
    with pytest.raises(UserError, match="sweep.json is missing"):
        read_sweep_state(tmp_path)
    (tmp_path / "sweep.json").write_text("{")
    with pytest.raises(UserError, match="cannot be read"):
        read_sweep_state(tmp_path)
