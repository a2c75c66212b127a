"""Failover time of ``--ha zookeeper`` (issue #16): kill -9 of the master to the next confirm.

Usage (from the repository root)::

    uv run python benchmarks/ha_zk_failover.py --rounds 20 [--load 2] [--bdb-sync nosync]

A real ZooKeeper (Debian's package) and three real broker processes on loopback, started as the
tests do (``tests/support/zookeeper.py``, ``tests/support/zk_group.py``). Each round: kill -9 of
the master, then a pika client publishes a persistent message with confirms over the survivors'
URLs, retrying every 20 ms, until one is confirmed; the round's time is kill to that confirm.
The killed broker rejoins and catches up before the next round. Printed per round with the
new master's milestones (from its log: the replica saw the master go, elected, replication
master, promoted), then p50 and max. ``--load N`` runs N busy-looping processes meanwhile (a
loaded machine). Writes ``benchmarks/results/ha_zk-failover.json``.

:func:`measure` is the function to call from another benchmark (``ha_zk_vs_quorum.py``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pika
from pika.exceptions import AMQPError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.ha_load import log_time  # noqa: E402
from support.zk_group import HAGroup  # noqa: E402
from support.zookeeper import ZooKeeperEnsemble  # noqa: E402

QUEUE = "failover"
#: Keep the brokers' data and logs (PLUGMQ_BENCH_KEEP=1) to look into a failed round.
KEEP = os.environ.get("PLUGMQ_BENCH_KEEP") == "1"
MILESTONES = (
    "ha_zk.master_changed",
    "ha_zk.master_gone",
    "ha_zk.elected",
    "ha_zk.replication_master",
    "ha_zk.promoted",
)


def publish_confirmed(urls: list[str], deadline: float) -> str:
    """Retry over ``urls`` until one broker confirms a persistent publish; its URL."""
    while time.monotonic() < deadline:
        for url in urls:
            try:
                parameters = pika.URLParameters(url)
                parameters.connection_attempts = 1
                parameters.socket_timeout = 1
                connection = pika.BlockingConnection(parameters)
                channel = connection.channel()
                channel.confirm_delivery()
                channel.queue_declare(QUEUE, durable=True)
                channel.basic_publish("", QUEUE, b"x", pika.BasicProperties(delivery_mode=2))
                connection.close()
                return url
            except (AMQPError, OSError):
                continue
        time.sleep(0.02)
    raise TimeoutError("no broker confirmed within the deadline")


def milestones(group: HAGroup, index: int, killed_at: float) -> dict[str, float]:
    """Seconds from the kill to each milestone the new master logged after it."""
    found: dict[str, float] = {}
    for event in group.brokers[index].events():
        name = event.get("event")
        if name in MILESTONES and name not in found and log_time(event) >= killed_at:
            found[name] = round(log_time(event) - killed_at, 3)
    return found


def one_round(group: HAGroup, master: int) -> tuple[dict[str, Any], int]:
    """Kill the master, time the next confirm, let the killed broker rejoin; the new master."""
    urls = [b.url for i, b in enumerate(group.brokers) if i != master]
    killed_wall = time.time()
    started = time.monotonic()
    group.brokers[master].kill()
    publish_confirmed(urls, started + 60)
    seconds = time.monotonic() - started
    killed, new = master, group.master(among=tuple(i for i in range(3) if i != master))
    result = {"seconds": round(seconds, 3), **milestones(group, new, killed_wall)}
    group.brokers[killed].start(ready_event="broker_listening")
    group.brokers[killed].wait_event("ha_zk.caught_up", timeout=60)
    return result, new


def measure(rounds: int, bdb_sync: str = "nosync", session_timeout: float | None = None) -> dict:
    """Run ``rounds`` failovers on a fresh group; the figures (seconds) and every round."""
    tmp = Path(tempfile.mkdtemp(prefix="ha_zk_failover"))
    zk = ZooKeeperEnsemble(tmp / "zk").start()
    group = HAGroup(tmp, zk.hosts, "/plugmq/failover")
    for broker in group.brokers:
        broker.args[broker.args.index("--bdb-sync") + 1] = bdb_sync
        if session_timeout is not None:
            broker.args[broker.args.index("--zk-session-timeout") + 1] = str(session_timeout)
    try:
        group.start()
        master = group.master()
        publish_confirmed([group.brokers[master].url], time.monotonic() + 30)
        group.wait_caught_up(master)
        results = []
        for number in range(rounds):
            result, master = one_round(group, master)
            print(f"round {number + 1}: {result}", flush=True)
            results.append(result)
    finally:
        group.stop()
        zk.stop()
        if KEEP:
            print(f"logs and data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    times = [r["seconds"] for r in results]
    return {
        "rounds": results,
        "p50": round(statistics.median(times), 3),
        "max": round(max(times), 3),
        "bdb_sync": bdb_sync,
    }


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def main() -> None:
    """Parse the flags, run, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--bdb-sync", default="nosync", choices=("commit", "nosync"))
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes meanwhile")
    parser.add_argument("--session-timeout", type=float, default=None)
    args = parser.parse_args()
    burners = [
        multiprocessing.Process(target=_busy, args=(3600,), daemon=True) for _ in range(args.load)
    ]
    for burner in burners:
        burner.start()
    try:
        result = measure(args.rounds, args.bdb_sync, args.session_timeout)
    finally:
        for burner in burners:
            burner.terminate()
    result["load_processes"] = args.load
    out = ROOT / "benchmarks" / "results" / "ha_zk-failover.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"failover over {args.rounds} rounds: p50 {result['p50']} s, max {result['max']} s")


if __name__ == "__main__":
    main()
