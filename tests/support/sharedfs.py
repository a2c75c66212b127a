"""A group of real brokers sharing one data directory under ``--ha sharedfs``, and pika
clients that fail over through the group's list of ConnectionParameters.

Every broker listens on a port chosen up front (so its URL, advertised in the lease and in
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


@dataclass
class SharedFSGroup(GroupMembers):
    """N brokers of one HA group on one shared data directory."""

    tmp_path: Path
    size: int = 3
    lease: float = 2.0
    group: str = "test-group"
    extra: tuple[str, ...] = ()
    data_dir: Path = field(init=False)
    brokers: list[BrokerProcess] = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.tmp_path / "shared"
        self.brokers = [self.member(f"b{i}") for i in range(self.size)]

    def member(self, name: str, *more: str) -> BrokerProcess:
        """A broker of the group (not started) on a port of its own."""
        port = free_port()
        args = [
            "--port", str(port), "--ha", "sharedfs", "--ha-lease", str(self.lease),
            "--ha-advertise-url", f"amqp://127.0.0.1:{port}/", "--ha-group", self.group,
            *self.extra, *more,
        ]  # fmt: skip
        broker = BrokerProcess(self.data_dir, self.tmp_path / f"{name}.log", args)
        broker.port = port
        return broker
