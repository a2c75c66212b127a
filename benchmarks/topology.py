"""Issue #14's figures: the production topology (3 ``--ha zookeeper`` groups of 3, one ZooKeeper
ensemble, ``--discovery zookeeper --network dynamic``) on one machine, next to one group.

Usage (from the repository root)::

    uv run python benchmarks/topology.py --duration 15 --failovers 6

* **Aggregate durable confirmed/s**: ``plugmq perf durable`` (persistent messages, publisher
  confirms, a consumer acking; one queue per client) against each group's master at once,
  summed, next to the same client against the master of a lone group, and next to three such
  clients against that one master (the same client load, one group). Local traffic: the
  network's links idle (nothing bound across groups).
* **Across groups**: the end-to-end test's load (tests/support/topology_load.py: one publisher
  per group waiting for each confirm, one consumer per group bound to every group's messages),
  unpaced: confirmed/s of all publishers and deliveries/s of all consumers (each message is
  delivered 3 times: once per group).
* **Failover across groups**: under the paced cross-group load, kill -9 a group's master (each
  group in turn); the time until (a) every other group's consumer received a message the
  killed group's publisher sent after the kill and (b) the killed group's consumer received a
  message every other group sent after the kill; p50 and max of the later of (a) and (b).
  The killed broker rejoins (and catches up) before the next round.

Real processes started by the test harness (tests/support/topology.py). Writes
``benchmarks/results/topology.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.topology import GROUP_NAMES, Topology  # noqa: E402
from support.topology_load import MeshLoad  # noqa: E402


def perf_durable(url: str, duration: float, queue: str) -> float:
    """``plugmq perf durable`` against ``url``; its confirmed messages per second."""
    output = subprocess.run(
        [sys.executable, "-m", "plugmq", "perf", "durable", "--url", url, "--queue", queue,
         "--duration", str(duration), "--json", "--quiet"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result = json.loads(output)
    scenario = result[0] if isinstance(result, list) else result
    return float(scenario["confirmed_per_s"])


def aggregate(urls: list[str], duration: float) -> float:
    """One ``perf durable`` per URL at once (each on its own queue); the sum of their rates."""
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        jobs = [
            pool.submit(perf_durable, url, duration, f"bench-{n}") for n, url in enumerate(urls)
        ]
        return sum(job.result() for job in jobs)


def across(topology: Topology, duration: float) -> dict[str, float]:
    """The cross-group load unpaced for ``duration`` seconds: confirms and deliveries per s."""
    load = MeshLoad(topology, rate=None)
    load.start_consumers()
    load.wait_mesh()
    load.start_publishers()
    time.sleep(2)  # warm-up: links and consumers reach their pace
    confirmed, delivered = sum(load.confirmed.values()), sum(load.received.values())
    started = time.monotonic()
    time.sleep(duration)
    elapsed = time.monotonic() - started
    result = {
        "confirmed_per_second": (sum(load.confirmed.values()) - confirmed) / elapsed,
        "delivered_per_second": (sum(load.received.values()) - delivered) / elapsed,
    }
    load.stop()
    return result


def failovers(topology: Topology, rounds: int, rate: float) -> list[dict[str, Any]]:
    """Kill each group's master in turn under paced cross-group load (module docstring)."""
    load = MeshLoad(topology, rate=rate)
    load.start_consumers()
    load.wait_mesh()
    load.start_publishers()
    names = list(topology.groups)
    for consumer in names:  # warm-up: every pair flows before the first kill
        for origin in names:
            load.wait_received(consumer, origin, 20)
    results = []
    try:
        for round_ in range(rounds):
            name = names[round_ % len(names)]
            group = topology.groups[name]
            marks = {origin: load.sent[origin] for origin in names}
            dead, killed_at = group.kill_master()
            others = [other for other in names if other != name]
            outgoing = max(load.wait_newer(other, name, marks[name]) for other in others)
            incoming = max(load.wait_newer(name, other, marks[other]) for other in others)
            group.wait_master()
            results.append(
                {
                    "group": name,
                    "out_seconds": round(outgoing - killed_at, 3),
                    "in_seconds": round(incoming - killed_at, 3),
                    "seconds": round(max(outgoing, incoming) - killed_at, 3),
                }
            )
            print(f"round {round_ + 1}: {results[-1]}", file=sys.stderr)
            group.restart_dead()
            dead.wait_event("ha_zk.caught_up", timeout=120)
    finally:
        load.stop()
    return results


def main() -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--failovers", type=int, default=6)
    parser.add_argument("--rate", type=float, default=20.0, help="msg/s per publisher (failover)")
    parser.add_argument("--bdb-sync", default="commit")
    args = parser.parse_args()
    extra = ("--bdb-sync", args.bdb_sync)  # the last --bdb-sync given counts
    result: dict[str, Any] = {"bdb_sync": args.bdb_sync, "duration": args.duration}
    with tempfile.TemporaryDirectory(prefix="topology_bench") as tmp:
        one = Topology(Path(tmp) / "one", group_names=GROUP_NAMES[:1], extra=extra)
        try:
            one.start()
            master = one.masters()[GROUP_NAMES[0]].url
            result["one_group_one_client"] = aggregate([master], args.duration)
            result["one_group_three_clients"] = aggregate([master] * 3, args.duration)
        finally:
            one.stop()
        three = Topology(Path(tmp) / "three", extra=extra)
        try:
            three.start()
            three.wait_network()
            masters = [broker.url for broker in three.masters().values()]
            result["three_groups_one_client_each"] = aggregate(masters, args.duration)
            # Failovers before the unpaced load: that one leaves backlogs in the network's
            # queues, which new messages would wait behind.
            rounds = failovers(three, args.failovers, args.rate) if args.failovers else []
            result["across_groups"] = across(three, args.duration)
        finally:
            three.stop()
    times = [r["seconds"] for r in rounds]
    result["failover_rounds"] = rounds
    result["failover_p50"] = round(statistics.median(times), 3) if times else None
    result["failover_max"] = round(max(times), 3) if times else None
    out = ROOT / "benchmarks" / "results" / "topology.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    cross = result["across_groups"]
    rows = [
        ("one group, 1 perf client: durable confirmed/s", result["one_group_one_client"]),
        ("one group, 3 perf clients", result["one_group_three_clients"]),
        ("3 groups, 1 perf client per master", result["three_groups_one_client_each"]),
        ("across groups: confirmed/s (3 sync publishers)", cross["confirmed_per_second"]),
        ("across groups: deliveries/s (3 consumers)", cross["delivered_per_second"]),
    ]
    print("| figure | value |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value:.0f} |")
    failover = f"{result['failover_p50']} / {result['failover_max']}"
    print(f"| kill -9 of a master to traffic across groups, p50 / max (s) | {failover} |")


if __name__ == "__main__":
    main()
