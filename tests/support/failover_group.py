"""A failover group of real broker processes for HA and client-failover tests.

:class:`FailoverGroup` starts N brokers of one HA mode, knows which is master, kills it with
kill -9 and has another take over, and restarts a killed member (on its old port, so clients'
static URL lists stay right) as a standby. Everything HA-specific is an :class:`HAMode`: how a
member is started (arguments, data directory, the event that says it is up) and how a master
comes about (:meth:`HAMode.elect`: promote one, or wait for the lock/election to pick one).
:class:`ToyHAMode` drives tests/ha/plugins/toy_ha.py (signals and a group file); ha_sharedfs
and ha_zk tests bring their own mode and reuse the rest, and the invariant ledger
(:mod:`support.ledger`) is told about every fault.

Every member gets its TCP port before it starts (free loopback ports, taken once) and keeps it
across restarts, so a mode whose standbys do not listen at all works the same: the group's
URLs are known from the start, as an operator's client configuration would be.

Members share nothing but what the mode gives them: the toy mode gives them one data directory,
which only the master opens (the Berkeley DB store's flock keeps a second opener out), the way
a shared-filesystem group works.
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from typing import Protocol

from support.broker_process import BrokerProcess
from support.ledger import Ledger

TOY_HA = str(Path(__file__).parents[1] / "ha" / "plugins" / "toy_ha.py")


class HAMode(Protocol):
    """What the group needs to know about one HA strategy."""

    #: The log event a freshly started member writes once it is up (as a standby or master);
    #: it need not name listeners (a standby that does not listen).
    ready_event: str

    def member_args(self, group: FailoverGroup, index: int) -> list[str]:
        """Broker arguments of member ``index`` (beyond port, interface, logs, data dir)."""
        ...

    def data_dir(self, group: FailoverGroup, index: int) -> Path:
        """The data directory of member ``index`` (shared or not, as the strategy needs)."""
        ...

    def elect(self, group: FailoverGroup, candidates: list[BrokerProcess]) -> BrokerProcess:
        """Have one of the live ``candidates`` (in preference order) become master; return it
        once it serves (its ``broker_active`` event was seen)."""
        ...


class FailoverGroup:
    """N brokers of one :class:`HAMode`; one master at a time. Stop it with :meth:`stop`."""

    def __init__(
        self, tmp_path: Path, mode: HAMode, size: int = 3, ledger: Ledger | None = None
    ) -> None:
        self.tmp_path = tmp_path
        self.mode = mode
        self.ledger = ledger
        self.members = [
            BrokerProcess(mode.data_dir(self, index), tmp_path / f"member{index}.log", [])
            for index in range(size)
        ]
        self.master: BrokerProcess | None = None
        self.takeovers = 0
        #: Per member, how many log events came before its current life (logs are appended).
        self._life_starts = [0] * size

    @property
    def urls(self) -> list[str]:
        """Every member's ``amqp://guest:guest@127.0.0.1:PORT/``, in member order."""
        return [member.url for member in self.members]

    @property
    def addresses(self) -> list[str]:
        """Every member's URL without credentials (what a broker may advertise)."""
        return [f"amqp://127.0.0.1:{member.port}/" for member in self.members]

    def start(self) -> BrokerProcess:
        """Start every member, then have the first become master; return it."""
        for member, port in zip(self.members, _free_ports(len(self.members)), strict=True):
            member.port = port
        for index in range(len(self.members)):
            self._spawn(index)
        self.master = self.mode.elect(self, list(self.members))
        return self.master

    def _spawn(self, index: int) -> None:
        member = self.members[index]
        # The broker takes the last --port given (BrokerProcess passes --port 0 first).
        member.args = [*self.mode.member_args(self, index), "--port", str(member.port)]
        self._life_starts[index] = len(member.events())
        member.start(ready_event=self.mode.ready_event)

    def kill_master(self) -> BrokerProcess:
        """kill -9 the master, have the next live member take over; return the new master."""
        assert self.master is not None, "start() the group first"
        dead = self.members.index(self.master)
        if self.ledger is not None:
            self.ledger.fault()
        self.master.kill()
        order = self.members[dead + 1 :] + self.members[:dead]
        self.master = self.mode.elect(self, [member for member in order if member.alive])
        self.takeovers += 1
        if self.ledger is not None:
            self.ledger.recovered()
        return self.master

    def restart_dead(self) -> None:
        """Start every killed member again, on its old port, as a standby."""
        for index, member in enumerate(self.members):
            if not member.alive:
                self._spawn(index)

    def masters_alive(self) -> list[BrokerProcess]:
        """Live members whose last role event in this life says master (at most one)."""
        return [
            member
            for member, start in zip(self.members, self._life_starts, strict=True)
            if member.alive and _is_master(member.events()[start:])
        ]

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL)."""
        for member in self.members:
            member.stop()


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free right now (all bound at once, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _is_master(events: list[dict]) -> bool:
    changes = ("broker_active", "broker_fenced")
    roles = [e["event"] for e in events if e["event"] in changes]
    return bool(roles) and roles[-1] == "broker_active"


class ToyHAMode:
    """The toy strategy: a shared data directory, a group file, SIGUSR1 promotes."""

    ready_event = "broker_listening"

    def __init__(self, tmp_path: Path, store_args: tuple[str, ...] = ()) -> None:
        self.group_file = tmp_path / "toy-group.json"
        self.shared_data = tmp_path / "shared-data"
        self.store_args = list(store_args)
        self._write(master="", members=[])

    def member_args(self, group: FailoverGroup, index: int) -> list[str]:
        """Load the toy plugin, point it at the group file."""
        return [
            "--load-module",
            TOY_HA,
            "--ha",
            "toy",
            "--toy-group-file",
            str(self.group_file),
            *self.store_args,
        ]

    def data_dir(self, group: FailoverGroup, index: int) -> Path:
        """One directory for all: only the master opens it."""
        return self.shared_data

    def elect(self, group: FailoverGroup, candidates: list[BrokerProcess]) -> BrokerProcess:
        """Name the first candidate master in the group file, then promote it (SIGUSR1)."""
        master = candidates[0]
        self._write(master=f"amqp://127.0.0.1:{master.port}/", members=group.addresses)
        assert master.process is not None
        master.process.send_signal(signal.SIGUSR1)
        master.wait_listening()
        return master

    def _write(self, master: str, members: list[str]) -> None:
        # Write then rename: a broker reading the file per connection never sees half of it.
        scratch = self.group_file.with_suffix(".tmp")
        scratch.write_text(json.dumps({"master": master, "members": members}))
        scratch.replace(self.group_file)
