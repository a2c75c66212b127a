"""Brokers on one PostgreSQL schema (``--store pg``, optionally ``--ha pg``), pika clients that
fail over through the group's list of ConnectionParameters, and the fault-testing ledger.

Every broker listens on a port chosen up front (so its URL, advertised in the lock row and in
``cluster_urls``, survives a restart) and logs JSON to its own file. The ledger is the one of
design.md "Fault testing": what the clients know for sure about confirms and committed acks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from support.broker_process import BrokerProcess
from support.ha_load import (  # noqa: F401 - re-exported for the tests of this group
    CLIENT_ERRORS,
    PERSISTENT,
    Clients,
    GroupMembers,
    Ledger,
    check_ledger,
    confirms_after,
    drain,
    free_port,
    log_time,
)
from support.postgres import PostgresServer


@dataclass
class PgGroup(GroupMembers):
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
