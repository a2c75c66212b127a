"""store_pg figures: durable confirmed/s and broker CPU per message on PostgreSQL vs Berkeley DB
(vs RabbitMQ when its package is installed), and ``--ha pg`` failover time.

Usage (from the repository root)::

    uv run python benchmarks/store_pg.py --runs 3 --duration 10

It starts a private PostgreSQL (``initdb`` + ``pg_ctl`` on a free loopback port in a scratch
directory, as ``tests/support/postgres.py`` does; fsync and ``synchronous_commit`` on, the
defaults), then for each broker runs ``plugmq perf durable`` (persistent 100-byte messages,
publisher confirms, window 100, one acking consumer) ``--runs`` times, alternating the order.
Broker CPU per message comes from ``/proc/<pid>/stat`` of the broker (``--broker-pid``); for
store_pg the PostgreSQL server's CPU is reported apart (its backends' ``/proc`` times).

Failover: two brokers under ``--ha pg`` (lease ``--lease``); the master is killed with SIGKILL
and the time measured until a pika client with confirms gets a publish confirmed by the other
broker (what an application sees). Results go to ``benchmarks/results/store_pg.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from brokers import RABBITMQ_BIN, PlugmqBroker, RabbitMQBroker, free_port  # noqa: E402
from run_side_by_side import perf  # noqa: E402
from support.postgres import PostgresServer, start_postgres  # noqa: E402

PLUGINS = ("--no-autoload", "--load-module", "transport_tcp")


def clock_ticks(pids: list[int]) -> int:
    """User + system clock ticks of these processes (gone ones count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def postgres_pids(server: PostgresServer) -> list[int]:
    """The postmaster and its children (backends, WAL writer, checkpointer)."""
    main = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
    return [main, *map(int, children)]


def durable_runs(args: argparse.Namespace, scratch: Path, server: PostgresServer) -> dict:
    """``perf durable`` against each broker, alternating; medians and every run."""
    brokers: dict[str, Any] = {
        "plugmq store_bdb": PlugmqBroker(scratch / "bdb", *PLUGINS, "--load-module", "store_bdb"),
        "plugmq store_pg": PlugmqBroker(
            scratch / "pg",
            *PLUGINS,
            "--load-module",
            "store_pg",
            "--store",
            "pg",
            "--pg-dsn",
            server.dsn(),
            "--pg-schema",
            "bench",
        ),
    }
    if RABBITMQ_BIN.exists() and not args.no_rabbitmq:
        brokers["RabbitMQ"] = RabbitMQBroker(scratch / "rabbitmq")
    runs: dict[str, list[dict]] = {f"{name}, {label}": [] for name in brokers for label in SCENES}
    try:
        for broker in brokers.values():
            broker.start()
        for number in range(args.runs):
            order = list(brokers.items())
            for name, broker in order if number % 2 == 0 else reversed(order):
                for label, (scenario, extra) in SCENES.items():
                    extra = [e.replace("{n}", str(number)) for e in extra]
                    found = one_run(broker, scenario, extra, args.duration, server)
                    if not name.endswith("store_pg"):
                        found.pop("postgres_cpu_us_per_msg")
                    runs[f"{name}, {label}"].append(found)
                    print(name, label, found, file=sys.stderr)
    finally:
        for broker in brokers.values():
            broker.stop()
    return {name: {"median": _medians(found), "runs": found} for name, found in runs.items()}


#: label -> (perf scenario, extra arguments): with an acking consumer most enqueue/ack pairs
#: cancel in the journal before the store sees them; with none every message is written.
SCENES = {
    "durable (confirms, window 100, acking consumer)": ("durable", []),
    "fill (confirms, window 1000, no consumer)": (
        "backlog",
        ["--count", "60000", "--confirm-window", "1000", "--queue", "fill-{n}"],
    ),
}


def one_run(
    broker: Any, scenario: str, extra: list[str], duration: float, server: PostgresServer
) -> dict:
    """One perf run: rate, broker CPU per message, PostgreSQL's CPU per message."""
    pg_before = clock_ticks(postgres_pids(server))
    result = perf(broker.url, broker.pid, scenario, extra, duration, 100)
    pg_ticks = clock_ticks(postgres_pids(server)) - pg_before
    messages = max(1, result.get("confirmed") or result.get("delivered") or 1)
    return {
        "rate": result["headline"]["value"],
        "broker_cpu_us_per_msg": result["broker_cpu_us_per_msg"],
        "postgres_cpu_us_per_msg": pg_ticks * 1e6 / os.sysconf("SC_CLK_TCK") / messages,
    }


def _medians(found: list[dict]) -> dict:
    keys = [key for key in found[0] if found[0][key] is not None]
    return {key: statistics.median(run[key] for run in found) for key in keys}


def failover_runs(args: argparse.Namespace, scratch: Path, server: PostgresServer) -> list[dict]:
    """Kill -9 the ``--ha pg`` master; seconds until the other broker confirms a publish."""
    results = []
    for number in range(args.failovers):
        ports = [free_port(), free_port()]
        members = [
            PlugmqBroker(
                scratch / f"ha{number}-{i}",
                *PLUGINS,
                "--load-module",
                "store_pg",
                "--store",
                "pg",
                "--pg-dsn",
                server.dsn(),
                "--pg-schema",
                f"failover{number}",
                "--ha",
                "pg",
                "--ha-lease",
                str(args.lease),
                "--ha-advertise-url",
                f"amqp://127.0.0.1:{port}/",
                port=port,
            )
            for i, port in enumerate(ports)
        ]
        try:
            members[0].start()
            _confirmed_publish(members[0].port, deadline=time.monotonic() + 60)
            members[1].start()
            time.sleep(1.0)  # the standby has polled the lock row and logged the holder
            killed = time.monotonic()
            members[0].kill9()
            confirmed = _confirmed_publish(members[1].port, deadline=killed + 120)
            results.append({"lease_s": args.lease, "kill_to_confirm_s": confirmed - killed})
            print("failover", results[-1], file=sys.stderr)
        finally:
            for member in members:
                member.stop()
    return results


def _confirmed_publish(port: int, deadline: float) -> float:
    """Retry until a persistent publish on ``port`` is confirmed; return when (monotonic)."""
    parameters = pika.ConnectionParameters("127.0.0.1", port, connection_attempts=1)
    while time.monotonic() < deadline:
        try:
            connection = pika.BlockingConnection(parameters)
        except pika.exceptions.AMQPError:
            time.sleep(0.02)  # a standby refusing (320): it is not master yet
            continue
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.queue_declare("failover", durable=True)
            channel.basic_publish("", "failover", b"x", pika.BasicProperties(delivery_mode=2))
            return time.monotonic()
        finally:
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()
    raise TimeoutError(f"no confirmed publish on port {port}")


def main() -> None:
    """Parse flags, run, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--no-rabbitmq", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "store_pg.json")
    args = parser.parse_args()
    server = start_postgres()
    if server is None:
        raise SystemExit("PostgreSQL is not installed (PLUGMQ_TEST_DEPS=1 scripts/bootstrap.sh)")
    scratch = Path(tempfile.mkdtemp(prefix="plugmq-bench-pg-"))
    try:
        figures = {
            "durable": durable_runs(args, scratch, server),
            "failover": failover_runs(args, scratch, server),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
        }
    finally:
        server.remove()
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
