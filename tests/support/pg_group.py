"""Brokers on one PostgreSQL schema (``--store pg``, optionally ``--ha pg``), pika clients that
fail over through the group's list of ConnectionParameters, and the fault-testing ledger.

Every broker listens on a port chosen up front (so its URL, advertised in the lock row and in
``cluster_urls``, survives a restart) and logs JSON to its own file. The ledger is the one of
design.md "Fault testing": what the clients know for sure about confirms and committed acks.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pika.exceptions

from support.broker_process import BrokerProcess
from support.ha_load import (  # noqa: F401 - re-exported for the tests of this group
    CLIENT_ERRORS,
    PERSISTENT,
    Clients,
    Ledger,
    check_ledger,
    confirms_after,
    drain,
    free_port,
    log_time,
)
from support.postgres import PostgresServer


@dataclass
class PgGroup:
    """N brokers on one PostgreSQL schema; ``ha`` adds ``--ha pg`` with ``lease``."""

    tmp_path: Path
    server: PostgresServer
    schema: str
    size: int = 3
    ha: bool = True
    lease: float = 2.0
    group: str = "test-group"
    extra: tuple[str, ...] = ()
    brokers: list[BrokerProcess] = field(init=False)

    def __post_init__(self) -> None:
        self.brokers = [self.member(f"b{i}") for i in range(self.size)]

    def member(self, name: str, *more: str) -> BrokerProcess:
        """A broker of the group (not started) on a port and data directory of its own."""
        port = free_port()
        args = ["--port", str(port), "--store", "pg", "--pg-dsn", self.server.dsn(),
                "--pg-schema", self.schema, *self.extra, *more]  # fmt: skip
        if self.ha:
            args += ["--ha", "pg", "--ha-lease", str(self.lease), "--ha-group", self.group,
                     "--ha-advertise-url", f"amqp://127.0.0.1:{port}/"]  # fmt: skip
        data_dir = self.tmp_path / f"{name}-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        broker = BrokerProcess(data_dir, self.tmp_path / f"{name}.log", args)
        broker.port = port
        return broker

    def start(self) -> BrokerProcess:
        """Start the first broker as master, the others as listening standbys."""
        self.brokers[0].start()
        for broker in self.brokers[1:]:
            broker.start(ready_event="broker_listening")
        return self.brokers[0]

    def stop(self) -> None:
        """Stop every broker (SIGCONT first, in case a test left one paused)."""
        for broker in self.brokers:
            if broker.alive:
                with contextlib.suppress(ProcessLookupError):
                    broker.process.send_signal(18)  # SIGCONT
                broker.stop()

    def parameters(self, **options: object) -> list[pika.ConnectionParameters]:
        """pika's failover list: one ConnectionParameters per member."""
        options = {"connection_attempts": 1, "socket_timeout": 2, "stack_timeout": 4, **options}
        return [pika.ConnectionParameters("127.0.0.1", b.port, **options) for b in self.brokers]

    def wait_master(self, after_epoch: int, timeout: float = 30.0) -> tuple[BrokerProcess, dict]:
        """The broker that became master with an epoch above ``after_epoch``, and its event."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for broker in self.brokers:
                for event in broker.events():
                    if event.get("event") == "broker_active" and event["epoch"] > after_epoch:
                        return broker, event
            time.sleep(0.02)
        tails = "\n".join(f"--- {b.log_path.name}\n{b.tail(15)}" for b in self.brokers)
        raise TimeoutError(f"no master above epoch {after_epoch} after {timeout}s\n{tails}")
