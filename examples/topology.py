"""The production topology on one machine: 9 brokers in 3 HA groups whose masters form a network.

::

    uv run python examples/topology.py up       # ZooKeeper ensemble + 9 brokers; prints the URLs
    uv run python examples/topology.py status   # every group's master and standbys, the links
    uv run python examples/topology.py down     # stop everything

``up`` starts a 3-server ZooKeeper ensemble (Debian's ``zookeeper`` package, installed by
``scripts/bootstrap.sh``) and three groups of three brokers, brokerName1..3, each group a
``--ha zookeeper`` group on its own ``--zk-path /plugmq/groups/<group>`` of that ensemble, every
broker with ``--discovery zookeeper --network dynamic``: the three masters find each other and
link every group to every other on ``amq.topic``. It returns once every group has a master and
the network's routes are in place; the processes keep running in the background (logs and data
in ``--dir``, default ``./topology-data``) until ``down``.

This is a demonstration: every process on this machine's loopback ports, ZooKeeper's and the
brokers' data under ``--dir``. docs/topology.md explains the command line of each broker for a
real deployment.

The processes are started by the same code the end-to-end test uses (tests/support/topology.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import zookeeper  # noqa: E402
from support.topology import Topology  # noqa: E402

STATE = "topology.json"
#: Seconds a broker or ZooKeeper server gets to exit on SIGTERM before ``down`` kills it.
GRACE = 10.0


def up(directory: Path) -> int:
    """Start the ensemble and the 9 brokers, write the state file, print how to use them."""
    if not zookeeper.available():
        print("ZooKeeper is not installed: run scripts/bootstrap.sh (Debian's zookeeper package).")
        return 1
    if (directory / STATE).exists():
        print(f"{directory} already holds a topology: run `down` first (or give another --dir).")
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    topology = Topology(directory)
    try:
        topology.start()
        topology.wait_network()
    except BaseException:
        topology.stop()
        raise
    _write_state(directory, topology)
    _print_welcome(directory, topology)
    return 0


def status(directory: Path) -> int:
    """``plugmq route map`` against a serving master: groups, masters, standbys and links."""
    state = _read_state(directory)
    if state is None:
        print(f"no topology in {directory}: start one with `up`")
        return 1
    for group in state["groups"].values():
        master = _master(group["urls"])
        if master is not None:
            result = _plugmq("route", "map", master)
            print(result.stdout, end="")
            return result.returncode
    print("no master answers (is the topology still coming up, or down?)")
    return 1


def _master(urls: list[str]) -> str | None:
    """The URL of the group's master, asked of whichever member answers (a replica redirects
    the admin client to it)."""
    brokers = [arg for url in urls for arg in ("--broker", url)]
    result = _plugmq("stat", "ha", *brokers, "--json")
    if result.returncode != 0:
        return None
    mine = [row for row in json.loads(result.stdout) if row["role"] == "master"]
    if not mine:
        return None
    address = mine[0]["listening"][0].split("://", 1)[1]
    return f"amqp://guest:guest@{address}/"


def down(directory: Path) -> int:
    """Stop every process ``up`` started (SIGTERM, then SIGKILL after a grace period)."""
    state = _read_state(directory)
    if state is None:
        print(f"no topology in {directory}")
        return 1
    processes = [p for group in state["groups"].values() for p in group["pids"]]
    processes += state["zookeeper"]
    mine = [pid for pid in processes if _started_here(pid, directory)]
    for pid in mine:
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while any(_running(pid) for pid in mine) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in mine:
        if _running(pid):
            os.killpg(pid, signal.SIGKILL)
    (directory / STATE).unlink()
    print(f"stopped {len(mine)} processes; logs and data stay in {directory}")
    return 0


def _write_state(directory: Path, topology: Topology) -> None:
    state = {
        "zookeeper": [server.process.pid for server in topology.zookeeper.servers],
        "zookeeper_hosts": topology.zookeeper.hosts,
        "groups": {
            name: {
                "urls": group.urls,
                "pids": [broker.process.pid for broker in group.brokers],
                "logs": [str(broker.log_path) for broker in group.brokers],
            }
            for name, group in topology.groups.items()
        },
    }
    (directory / STATE).write_text(json.dumps(state, indent=2))


def _read_state(directory: Path) -> dict | None:
    path = directory / STATE
    return json.loads(path.read_text()) if path.exists() else None


def _started_here(pid: int, directory: Path) -> bool:
    """Whether ``pid`` still is a process ``up`` started (its command line names our directory);
    a pid the kernel gave to another process since is left alone."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return str(directory.resolve()) in command


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (an exited process waiting for its parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1]
    except FileNotFoundError:
        return False
    return not state.startswith("Z")


def _plugmq(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "plugmq", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _print_welcome(directory: Path, topology: Topology) -> None:
    print(f"ZooKeeper ensemble: {topology.zookeeper.hosts}")
    for name, group in topology.groups.items():
        print(f"{name}: master {group.master.url}")
        print(f"    group URLs (clients fail over through them): {','.join(group.urls)}")
    first = next(iter(topology.groups.values())).master.url
    print(
        f"""
Try it (in another terminal; docs/topology.md has a publisher and consumers to run):
  uv run python examples/topology.py status    # groups, masters, standbys and links
  uv run plugmq stat ha --broker {first}
  uv run plugmq link list {first}
  kill -9 a master (pids in {directory / STATE}) and run status again.
Stop everything: uv run python examples/topology.py down
Logs: {directory}/<group>/b<N>.log"""
    )


def main() -> int:
    """Parse the command line and run ``up``, ``status`` or ``down``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "status", "down"])
    parser.add_argument("--dir", type=Path, default=Path("topology-data"), help="state and logs")
    arguments = parser.parse_args()
    directory = arguments.dir.resolve()
    return {"up": up, "status": status, "down": down}[arguments.command](directory)


if __name__ == "__main__":
    sys.exit(main())
