"""examples/topology.py as a newcomer runs it: ``up``, ``status``, ``down``, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import zookeeper
from support.topology import network_available

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "topology.py"

pytestmark = [
    pytest.mark.skipif(not zookeeper.available(), reason="zookeeper not installed"),
    pytest.mark.skipif(not network_available(), reason="plugmq-discovery not installed"),
]


def _example(command: str, directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), command, "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return not state.startswith("Z")


@pytest.mark.timeout(300)
def test_up_status_down(tmp_path: Path) -> None:
    directory = tmp_path / "topology"
    started = _example("up", directory)
    state_file = directory / "topology.json"
    pids = []
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads(state_file.read_text())
        pids = state["zookeeper"] + [p for g in state["groups"].values() for p in g["pids"]]
        assert len(pids) == 12 and all(_alive(pid) for pid in pids)
        for name, group in state["groups"].items():
            assert f"{name}: master amqp://guest:guest@127.0.0.1:" in started.stdout
            assert ",".join(group["urls"]) in started.stdout
        assert "examples/topology.py down" in started.stdout

        shown = _example("status", directory)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "Groups: 3" in shown.stdout
        for name in state["groups"]:
            assert f"  {name}: master amqp://127.0.0.1:" in shown.stdout
        assert "Routes: 6" in shown.stdout, shown.stdout
        for source in state["groups"]:
            for destination in state["groups"]:
                if source != destination:
                    link = f"  {source} (127.0.0.1:"
                    assert any(
                        line.startswith(link) and f"=> {destination} (" in line
                        for line in shown.stdout.splitlines()
                    ), (source, destination, shown.stdout)

        assert _example("up", directory).returncode == 1  # one topology per directory
    finally:
        stopped = _example("down", directory)
        for pid in pids:  # never leave a process behind, even when an assertion failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped 12 processes" in stopped.stdout
    assert not any(_alive(pid) for pid in pids)
    assert not state_file.exists()
    assert _example("status", directory).returncode == 1
