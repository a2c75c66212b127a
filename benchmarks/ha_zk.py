"""Issue #16's figures: a 3-broker ``--ha zookeeper`` group on one machine.

Usage (from the repository root)::

    uv run python benchmarks/ha_zk.py --duration 10 --failovers 10

* **Durable confirmed/s** with 3 replicas: ``plugmq perf durable`` against the master
  (persistent messages, publisher confirms, a consumer acking), and the master's CPU seconds per
  message (from ``/proc``, every thread; the replicas' CPU is reported too).
* **Failover time**: kill -9 of the master, then the time until a persistent message published
  to the new master is confirmed (a client retrying every 50 ms over the group's URLs), p50 and
  max over ``--failovers`` rounds; the killed broker rejoins before the next round.

A real ZooKeeper (Debian's package) and real broker processes, started as the tests do
(``tests/support/zookeeper.py``, ``tests/support/zk_group.py``). Writes
``benchmarks/results/ha_zk.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from ha_zk_failover import publish_confirmed  # noqa: E402  (benchmarks/ is the script's path)
from support.zk_group import HAGroup  # noqa: E402
from support.zookeeper import ZooKeeperEnsemble  # noqa: E402

from plugmq.perf.stats import read_proc  # noqa: E402


def cpu(pid: int) -> float:
    """CPU seconds a process used so far."""
    return read_proc(pid).cpu_seconds


def durable(group: HAGroup, master: int, duration: float) -> dict[str, Any]:
    """``plugmq perf durable`` against the master; rate and CPU per message."""
    before = [cpu(b.process.pid) for b in group.brokers]
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "plugmq",
            "perf",
            "durable",
            "--url",
            group.brokers[master].url,
            "--duration",
            str(duration),
            "--json",
            "--quiet",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    after = [cpu(b.process.pid) for b in group.brokers]
    result = json.loads(output)
    scenario = result[0] if isinstance(result, list) else result
    rate = float(scenario["confirmed_per_s"])
    messages = int(scenario["total_sent"])  # warm-up and drain included, as the CPU window
    used = [a - b for a, b in zip(after, before, strict=True)]
    return {
        "perf": scenario,
        "confirmed_per_second": rate,
        "cpu_seconds": [round(u, 2) for u in used],
        "messages": messages,
        "master_cpu_us_per_message": round(used[master] / messages * 1e6, 1),
        # perf's own figure (its measured window only), as in the tables above it
        "perf_broker_cpu_us_per_msg": scenario.get("broker_cpu_us_per_msg"),
        "replica_cpu_us_per_message": [
            round(u / messages * 1e6, 1) for i, u in enumerate(used) if i != master
        ],
    }


def failovers(group: HAGroup, master: int, rounds: int) -> tuple[list[float], int]:
    """Kill the master ``rounds`` times; seconds until the next confirm on the new master."""
    times = []
    for _ in range(rounds):
        urls = [b.url for i, b in enumerate(group.brokers) if i != master]
        group.brokers[master].kill()
        started = time.monotonic()
        publish_confirmed(urls, started + 60)
        times.append(time.monotonic() - started)
        killed = master
        master = group.master(among=tuple(i for i in range(3) if i != killed))
        group.brokers[killed].start(ready_event="broker_listening")
        time.sleep(1)  # let the rejoined replica catch up before the next kill
    return times, master


def main() -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--bdb-sync", default="commit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ha_zk_bench") as tmp:
        zk = ZooKeeperEnsemble(Path(tmp) / "zk").start()
        group = HAGroup(Path(tmp), zk.hosts, "/plugmq/bench", extra=())
        for broker in group.brokers:  # the figures are for the real durability setting
            index = broker.args.index("--bdb-sync")
            broker.args[index + 1] = args.bdb_sync
        try:
            group.start()
            master = group.master()
            throughput = durable(group, master, args.duration)
            times, master = failovers(group, master, args.failovers) if args.failovers else ([], 0)
        finally:
            group.stop()
            zk.stop()
    result = {
        "bdb_sync": args.bdb_sync,
        "durable": throughput,
        "failover_seconds": [round(t, 3) for t in times],
        "failover_p50": round(statistics.median(times), 3) if times else None,
        "failover_max": round(max(times), 3) if times else None,
    }
    out = ROOT / "benchmarks" / "results" / "ha_zk.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| figure | plugmq ha_zk (3 replicas) |\n|---|---|")
    print(f"| durable confirmed/s | {throughput['confirmed_per_second']:.0f} |")
    print(f"| master CPU µs/message | {throughput['master_cpu_us_per_message']} |")
    print(f"| each replica's CPU µs/message | {throughput['replica_cpu_us_per_message']} |")
    print(f"| failover p50 / max (s) | {result['failover_p50']} / {result['failover_max']} |")


if __name__ == "__main__":
    main()
