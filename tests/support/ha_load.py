"""Pika load for HA fault tests, and the ledger it keeps (design.md "Fault testing").

Confirmed publishers and a transactional acking consumer, each in a thread, each going round a
group's list of ConnectionParameters after every error; the ledger records what the clients
know for sure (confirmed bodies, committed and in-doubt acks) and ``check_ledger`` asserts the
invariants: nothing confirmed is lost, nothing acknowledged comes back. Shared by the
ha_sharedfs and store_pg (``--ha pg``) groups.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pika
import pika.exceptions

from support.broker_process import BrokerProcess

PERSISTENT = pika.BasicProperties(delivery_mode=2)
CLIENT_ERRORS = (pika.exceptions.AMQPError, OSError, AssertionError)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_time(event: dict) -> float:
    """An event's timestamp as seconds since the epoch."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


class GroupMembers:
    """What every HA test group does with its ``brokers`` (the first one starts as master)."""

    brokers: list[BrokerProcess]

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


@dataclass
class Ledger:
    """What the clients know for sure (design.md "Fault testing")."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    confirmed: set[bytes] = field(default_factory=set)
    confirmed_by_port: Counter = field(default_factory=Counter)
    #: (wall time of the confirm, port of the broker that sent it)
    confirm_times: list[tuple[float, int]] = field(default_factory=list)
    committed_acks: set[bytes] = field(default_factory=set)
    in_doubt_acks: set[bytes] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def confirm(self, body: bytes, port: int) -> None:
        """A publish was confirmed by the broker on ``port``."""
        with self.lock:
            self.confirmed.add(body)
            self.confirmed_by_port[port] += 1
            self.confirm_times.append((time.time(), port))

    def count(self) -> int:
        with self.lock:
            return len(self.confirmed)


class Clients:
    """Confirmed publishers and a transactional acking consumer, each in a thread, each
    reconnecting through the group's pika failover list after every error."""

    def __init__(self, parameters: list[pika.ConnectionParameters], queue: str) -> None:
        self.parameters = parameters
        self.queue = queue
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.per_publisher: Counter = Counter()
        self.publishers = 0

    def start(self, publishers: int = 3, consumers: int = 1) -> Clients:
        """Start the client threads."""
        self.publishers = publishers
        targets = [(self._publish, (n,)) for n in range(publishers)]
        targets += [(self._consume, ()) for _ in range(consumers)]
        for target, args in targets:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the threads (each finishes its current operation)."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(20)

    def wait_progress(self, each: int, timeout: float = 30.0) -> None:
        """Wait until every publisher confirmed ``each`` more messages than now."""
        with self.ledger.lock:
            goal = {n: self.per_publisher[n] + each for n in range(self.publishers)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.ledger.lock:
                if all(self.per_publisher[n] >= goal[n] for n in goal):
                    return
            time.sleep(0.02)
        raise TimeoutError(f"publishers stalled: {dict(self.per_publisher)} < {goal}")

    def _connect(self) -> pika.BlockingConnection:
        connection = pika.BlockingConnection(self.parameters)
        return connection

    def _publish(self, number: int) -> None:
        sequence = 0
        while not self.stopping.is_set():
            try:
                with contextlib.closing(self._connect()) as connection:
                    port = connection._impl.params.port
                    channel = connection.channel()
                    channel.confirm_delivery()
                    channel.queue_declare(self.queue, durable=True)
                    while not self.stopping.is_set():
                        body = f"p{number}-{sequence}".encode()
                        sequence += 1
                        channel.basic_publish("", self.queue, body, PERSISTENT)
                        self.ledger.confirm(body, port)
                        with self.ledger.lock:
                            self.per_publisher[number] += 1
            except CLIENT_ERRORS as error:
                self._note(error)

    def _consume(self) -> None:
        while not self.stopping.is_set():
            try:
                with contextlib.closing(self._connect()) as connection:
                    channel = connection.channel()
                    channel.queue_declare(self.queue, durable=True)
                    channel.tx_select()
                    while not self.stopping.is_set():
                        self._consume_one_transaction(channel)
            except CLIENT_ERRORS as error:
                self._note(error)

    def _consume_one_transaction(self, channel) -> None:
        acked = []
        for _ in range(20):
            method, _properties, body = channel.basic_get(self.queue)
            if method is None:
                break
            channel.basic_ack(method.delivery_tag)
            acked.append(body)
        with self.ledger.lock:
            self.ledger.in_doubt_acks.update(acked)
        channel.tx_commit()
        with self.ledger.lock:
            self.ledger.committed_acks.update(acked)
            self.ledger.in_doubt_acks.difference_update(acked)
        if not acked:
            time.sleep(0.01)

    def _note(self, error: BaseException) -> None:
        with self.ledger.lock:
            self.ledger.errors.append(f"{type(error).__name__}: {error}")
        time.sleep(0.05)  # back off before the next pass through the failover list


def drain(parameters: list[pika.ConnectionParameters], queue: str) -> list[bytes]:
    """Every message left in ``queue`` (consumed without ack, from whichever member serves)."""
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        bodies = []
        while True:
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)
    finally:
        connection.close()


def check_ledger(ledger: Ledger, drained: list[bytes]) -> None:
    """The invariants: confirmed is there (or was acked), acked never comes back."""
    left = set(drained)
    assert ledger.confirmed, "nothing was confirmed: the load did not run"
    lost = ledger.confirmed - left - ledger.committed_acks - ledger.in_doubt_acks
    assert not lost, f"{len(lost)} confirmed messages lost, e.g. {sorted(lost)[:5]}"
    back = ledger.committed_acks & left
    assert not back, f"{len(back)} acknowledged messages came back, e.g. {sorted(back)[:5]}"


def confirms_after(ledger: Ledger, port: int, moment: float) -> int:
    """How many confirms the broker on ``port`` sent after ``moment`` (wall time)."""
    with ledger.lock:
        return sum(1 for when, p in ledger.confirm_times if p == port and when > moment)
