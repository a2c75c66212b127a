"""Issue #12's figures: sharedfs failover time, and the steady-state cost of ``--ha sharedfs``.

Usage (from the repository root)::

    uv run python benchmarks/ha_failover.py --rounds 20 --backlogs 0 100000 --duration 10

* **Failover**: two brokers share one data directory (``--ha sharedfs``). A durable queue holds
  ``backlog`` persistent 100-byte messages (filled once by ``plugmq perf backlog``, so every
  round's new master recovers all of them). Each round ``kill -9``\\ s the master and times,
  from the kill, (a) the first publish confirmed by the new master (a client that retries
  through the two URLs every 10 ms) and (b) the first delivery to a consumer that reconnects
  the same way (of that publish). The killed broker is restarted as the standby before the
  next round. p50 and max over the rounds.
* **Steady state**: ``plugmq perf durable`` (persistent, confirmed, one acking consumer)
  against a broker without HA and against a sharedfs master (with a standby waiting), one
  after the other in the same run.

Writes ``benchmarks/results/ha_failover.json`` (``--out``) and prints markdown tables.
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

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import PlugmqBroker, amqp_ready

from plugmq.client import AMQPClientError, ConnectionFailed, connect
from plugmq.logging import configure_logging

PLUGINS = ("--no-autoload", "--load-module", "transport_tcp", "--load-module", "store_bdb")
HA = ("--load-module", "ha_sharedfs", "--ha", "sharedfs")
CLIENT_ERRORS = (AMQPClientError, ConnectionFailed, OSError, trio.BrokenResourceError)
BACKLOG_QUEUE = "bench-backlog"
PROBE_QUEUE = "bench-probe"


class Member(PlugmqBroker):
    """A group member: its own log and port, the group's shared data directory."""

    def __init__(self, base: Path, shared: Path, lease: float) -> None:
        super().__init__(base)
        url = f"amqp://127.0.0.1:{self.port}/"
        # Info level: the benchmark reads broker_active (with its epoch) from the log.
        self.args = [*PLUGINS, *HA, "--data-dir", str(shared), "--ha-lease", str(lease),
                     "--ha-advertise-url", url, "--log-level", "info"]  # fmt: skip

    def active_epochs(self) -> list[int]:
        """Epochs this member became master in (from its log)."""
        return [e["epoch"] for e in self.events() if e.get("event") == "broker_active"]


def perf(url: str, *args: str) -> dict[str, Any]:
    """Run ``plugmq perf`` and return its JSON result."""
    command = [sys.executable, "-m", "plugmq", "perf", "--no-autoload", "--url", url,
               "--json", "--quiet", *args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"plugmq perf failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


async def first_confirm(urls: list[str], killed: float) -> float:
    """Seconds from ``killed`` until a persistent publish is confirmed by any member."""
    while True:
        try:
            async with connect(urls, connect_timeout=1) as conn, conn.channel() as channel:
                await channel.confirm_select()
                await channel.queue_declare(PROBE_QUEUE, durable=True)
                await channel.publish("", PROBE_QUEUE, b"probe", {"delivery_mode": 2})
                await channel.wait_for_confirms()
                return time.monotonic() - killed
        except CLIENT_ERRORS:
            await trio.sleep(0.01)


async def first_delivery(urls: list[str], killed: float) -> float:
    """Seconds from ``killed`` until a reconnected consumer receives a message."""
    while True:
        try:
            async with connect(urls, connect_timeout=1) as conn, conn.channel() as channel:
                await channel.queue_declare(PROBE_QUEUE, durable=True)
                async with channel.consume(PROBE_QUEUE, no_ack=True) as consumer:
                    async for _message in consumer:
                        return time.monotonic() - killed
        except CLIENT_ERRORS:
            await trio.sleep(0.01)


async def measure_round(urls: list[str], killed: float) -> tuple[float, float]:
    """Both times of one failover, measured concurrently."""
    results: dict[str, float] = {}

    async def run(name: str, probe: Any) -> None:
        results[name] = await probe(urls, killed)

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "deliver", first_delivery)
            nursery.start_soon(run, "confirm", first_confirm)
    return results["confirm"], results["deliver"]


def failover(base: Path, backlog: int, rounds: int, lease: float) -> dict[str, Any]:
    """``rounds`` kill -9 failovers with ``backlog`` messages to recover each time."""
    shared = base / "shared"
    members = [Member(base / name, shared, lease) for name in ("a", "b")]
    members[0].start()
    wait_master(members, after=0)
    members[1].start()
    urls = [m.url for m in members]
    fill_rate = None
    if backlog:
        filled = perf(urls[0], "backlog", "--count", str(backlog), "--queue", BACKLOG_QUEUE,
                      "--keep", "--confirm-window", "1000")  # fmt: skip
        fill_rate = filled.get("confirmed_per_s")
    confirms, deliveries, epoch = [], [], 1
    try:
        for number in range(rounds):
            master = next(m for m in members if epoch in m.active_epochs())
            killed = time.monotonic()
            master.kill9()
            confirm, deliver = trio.run(measure_round, urls, killed)
            epoch = wait_master(members, after=epoch)
            confirms.append(confirm)
            deliveries.append(deliver)
            print(f"  backlog {backlog:,} round {number + 1}: confirm {confirm:.3f} s, "
                  f"deliver {deliver:.3f} s", flush=True)  # fmt: skip
            master.start()
    finally:
        for member in members:
            member.stop()
    events = [e for m in members for e in m.events()]
    return {
        "takeover_reasons": [e["reason"] for e in events if e.get("event") == "ha_taking_over"],
        "fenced": sum(1 for e in events if e.get("event") == "broker_fenced"),
        "backlog": backlog,
        "rounds": rounds,
        "fill_confirmed_per_s": fill_rate,
        "confirm_s": confirms,
        "deliver_s": deliveries,
        "confirm_p50": statistics.median(confirms),
        "confirm_max": max(confirms),
        "deliver_p50": statistics.median(deliveries),
        "deliver_max": max(deliveries),
    }


def wait_master(members: list[Member], after: int, timeout: float = 900) -> int:
    """The epoch of the next master (above ``after``), from the members' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        epochs = [e for m in members for e in m.active_epochs() if e > after]
        if epochs:
            return max(epochs)
        time.sleep(0.02)
    raise TimeoutError(f"no master above epoch {after}")


def steady_state(base: Path, duration: float, runs: int) -> dict[str, Any]:
    """``perf durable`` without HA and against a sharedfs master (with a standby waiting),
    alternating ``runs`` times (the machine is shared: alternation spreads its noise)."""
    rates: dict[str, list[float]] = {"without_ha": [], "sharedfs": []}
    for run in range(runs):
        plain = PlugmqBroker(base / f"plain-{run}", *PLUGINS)
        plain.start()
        try:
            rates["without_ha"].append(with_rate(perf(plain.url, "durable", "--duration",
                                                      str(duration))))  # fmt: skip
        finally:
            plain.stop()
        shared = base / f"steady-shared-{run}"
        members = [Member(base / f"s{run}{name}", shared, 10.0) for name in ("a", "b")]
        members[0].start()
        wait_master(members, after=0)
        members[1].start()
        try:
            assert amqp_ready(members[1].port)
            rates["sharedfs"].append(with_rate(perf(members[0].url, "durable", "--duration",
                                                    str(duration))))  # fmt: skip
        finally:
            for member in members:
                member.stop()
        print(f"  steady run {run + 1}: without HA {rates['without_ha'][-1]:,.0f}/s, "
              f"sharedfs {rates['sharedfs'][-1]:,.0f}/s", flush=True)  # fmt: skip
    return {
        "runs": rates,
        "without_ha": statistics.median(rates["without_ha"]),
        "sharedfs": statistics.median(rates["sharedfs"]),
    }


def with_rate(result: Any) -> float:
    """The confirmed publish rate of a ``perf durable`` result."""
    scenario = result[0] if isinstance(result, list) else result
    for key in ("confirmed_per_s", "publish_rate", "published_per_s"):
        if key in scenario:
            return float(scenario[key])
    raise KeyError(f"no rate in {scenario}")


def main() -> None:
    """Run everything and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--backlogs", type=int, nargs="*", default=[0, 100_000])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--skip-steady", action="store_true")
    parser.add_argument("--steady-runs", type=int, default=3)
    parser.add_argument("--out", default="ha_failover.json", help="file in benchmarks/results")
    options = parser.parse_args()
    configure_logging("warning")  # the probes' connection attempts are not news
    results: dict[str, Any] = {"failover": []}
    with tempfile.TemporaryDirectory(prefix="plugmq-ha-bench-") as scratch:
        base = Path(scratch)
        if not options.skip_steady:
            results["steady"] = steady_state(base, options.duration, options.steady_runs)
            print(f"steady state: {results['steady']}", flush=True)
        for backlog in options.backlogs:
            results["failover"].append(
                failover(base / f"backlog-{backlog}", backlog, options.rounds, options.lease)
            )
    out = Path(__file__).resolve().parent / "results" / options.out
    out.write_text(json.dumps(results, indent=1))
    print("\n| backlog | confirm p50 (s) | confirm max (s) | deliver p50 (s) | deliver max (s) |")
    print("|---:|---:|---:|---:|---:|")
    for row in results["failover"]:
        print(f"| {row['backlog']:,} | {row['confirm_p50']:.3f} | {row['confirm_max']:.3f} | "
              f"{row['deliver_p50']:.3f} | {row['deliver_max']:.3f} |")  # fmt: skip
    if "steady" in results:
        steady = results["steady"]
        print(f"\ndurable confirmed/s (median of {len(steady['runs']['sharedfs'])}): without HA "
              f"{steady['without_ha']:,.0f}, --ha sharedfs {steady['sharedfs']:,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
