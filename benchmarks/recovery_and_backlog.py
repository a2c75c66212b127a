"""Issue #4's durability figures for plugmq (store_bdb) and RabbitMQ, same machine, same run.

Usage (from the repository root)::

    uv run python benchmarks/recovery_and_backlog.py --recovery-count 1000000 --backlog-gib 2

* **Recovery**: fill a durable queue with ``--recovery-count`` persistent 100-byte messages
  through ``plugmq perf backlog`` (publisher confirms, so every one is on disk), ``kill -9``
  the broker, restart it and time until it accepts AMQP and a passive ``queue.declare``
  reports every message back.
* **Backlog memory**: on a fresh broker, publish ``--backlog-gib`` GiB of persistent
  16 KiB messages with nobody consuming; report the broker's RSS once it holds all of it.
  plugmq keeps at most ``--queue-max-memory`` (64 MiB) of a durable queue's ready messages in
  memory and pages the rest from the store.

Writes ``benchmarks/results/recovery_and_backlog.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import PlugmqBroker, RabbitMQBroker

from plugmq.client import connect
from plugmq.perf.stats import read_proc

PLUGINS = ("--no-autoload", "--load-module", "transport_tcp", "--load-module", "store_bdb")
QUEUE = "bench-backlog"


def fill(
    broker: Any, count: int, size: int, window: int, python: str | None = None
) -> dict[str, Any]:
    """Publish ``count`` persistent messages to the durable queue ``QUEUE`` (confirmed).

    ``python`` is the interpreter whose ``plugmq perf`` runs (default: this one).
    """
    command = [
        python or sys.executable, "-m", "plugmq", "perf", "backlog", "--no-autoload",
        "--url", broker.url, "--broker-pid", str(broker.pid), "--count", str(count),
        "--size", str(size), "--confirm-window", str(window), "--queue", QUEUE, "--keep",
        "--json", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"fill failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


async def _count(url: str) -> int:
    async with connect(url, connect_timeout=5) as conn, conn.channel() as channel:
        return (await channel.queue_declare(QUEUE, passive=True)).message_count


def message_count(url: str) -> int | None:
    """Messages in ``QUEUE`` (passive declare); None if the broker refuses for now."""
    try:
        return trio.run(_count, url)
    except Exception:
        return None


def recovery(broker: Any, count: int, window: int, python: str | None = None) -> dict[str, Any]:
    """Fill, kill -9, restart: seconds until AMQP and until every message is back.

    ``python`` runs the filling ``plugmq perf`` (default: this interpreter). The broker's CPU
    seconds spent restarting (start to every message back) are reported too.
    """
    filled = fill(broker, count, 100, window, python)
    print(f"  {broker.kind}: filled {count} at {filled['confirmed_per_s']:,.0f} confirmed/s")
    before = message_count(broker.url)
    broker.kill9()
    began = time.monotonic()
    broker.start(timeout=1800)
    ready = time.monotonic() - began
    recovered = None
    while time.monotonic() - began < 1800:
        recovered = message_count(broker.url)
        if recovered is not None and recovered >= count:
            break
        time.sleep(0.2)
    complete = time.monotonic() - began
    sample = read_proc(broker.pid)
    rss = sample.rss_bytes
    print(f"  {broker.kind}: AMQP after {ready:.1f} s, {recovered} messages after {complete:.1f} s")
    return {
        "fill_confirmed_per_s": filled["confirmed_per_s"],
        "fill_broker_cpu_us_per_msg": filled["broker_cpu_us_per_msg"],
        "messages_before_kill": before,
        "messages_recovered": recovered,
        "amqp_ready_s": ready,
        "all_messages_back_s": complete,
        "rss_after_recovery_mib": rss / 2**20,
        "restart_cpu_s": sample.cpu_seconds,
    }


def backlog(broker: Any, gib: float, size: int, window: int) -> dict[str, Any]:
    """Fill ``gib`` GiB of persistent ``size``-byte messages; report the broker's RSS."""
    count = int(gib * 2**30 / size)
    filled = fill(broker, count, size, window)
    held = message_count(broker.url)
    time.sleep(5)
    rss = read_proc(broker.pid).rss_bytes
    print(f"  {broker.kind}: {held} x {size} B held, RSS {rss / 2**20:,.0f} MiB")
    return {
        "messages": held,
        "bytes": (held or 0) * size,
        "fill_confirmed_per_s": filled["confirmed_per_s"],
        "fill_mib_per_s": filled["confirmed_per_s"] * size / 2**20,
        "rss_mib": rss / 2**20,
    }


def main() -> None:
    """Run both measurements on both brokers; write JSON and print markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recovery-count", type=int, default=1_000_000)
    parser.add_argument("--backlog-gib", type=float, default=2.0)
    parser.add_argument("--backlog-size", type=int, default=16384)
    parser.add_argument("--window", type=int, default=1000, help="confirm window of the fill")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--skip-rabbitmq", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="plugmq-durability-"))
    results: dict[str, dict[str, Any]] = {}
    kinds = ["plugmq"] if args.skip_rabbitmq else ["plugmq", "rabbitmq"]
    for kind in kinds:
        results[kind] = {}
        for measurement in ("recovery", "backlog"):
            base = scratch / f"{kind}-{measurement}"
            broker = PlugmqBroker(base, *PLUGINS) if kind == "plugmq" else RabbitMQBroker(base)
            broker.start()
            try:
                if measurement == "recovery":
                    results[kind]["recovery"] = recovery(broker, args.recovery_count, args.window)
                else:
                    results[kind]["backlog"] = backlog(
                        broker, args.backlog_gib, args.backlog_size, args.window // 10 or 1
                    )
            finally:
                broker.stop()
                shutil.rmtree(base, ignore_errors=True)
    (args.out / "recovery_and_backlog.json").write_text(json.dumps(results, indent=2))
    lines = ["| measurement | plugmq | RabbitMQ |", "|---|---:|---:|"]

    def row(name: str, section: str, key: str, fmt: str) -> None:
        cells = [
            format(results[k][section][key], fmt) if k in results else "not measured"
            for k in ("plugmq", "rabbitmq")
        ]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")

    row("fill: confirmed msg/s (100 B, persistent)", "recovery", "fill_confirmed_per_s", ",.0f")
    row("restart after kill -9: AMQP accepted (s)", "recovery", "amqp_ready_s", ".1f")
    row("restart after kill -9: all messages back (s)", "recovery", "all_messages_back_s", ".1f")
    row("messages recovered", "recovery", "messages_recovered", ",")
    row("RSS after recovery (MiB)", "recovery", "rss_after_recovery_mib", ",.0f")
    row("backlog held (bytes)", "backlog", "bytes", ",")
    row("backlog fill (MiB/s)", "backlog", "fill_mib_per_s", ",.1f")
    row("broker RSS holding the backlog (MiB)", "backlog", "rss_mib", ",.0f")
    print("\n".join(lines))
    (args.out / "recovery_and_backlog.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
