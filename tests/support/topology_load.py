"""Real pika traffic across the groups of a :class:`~support.topology.Topology`, kept in ledgers.

Every group has one confirmed publisher (persistent messages to ``amq.topic`` with the key
``orders.<group>`` and a ``message_id`` ``<group>-<n>``) and one acking consumer of the durable
queue ``orders.<group>`` bound to ``orders.#``: every message is for every group's consumer.
Each client goes round its group's URL list after every error (a replica refuses with a
redirect; the next member is tried), so it follows the group's master across failovers.

One :class:`~support.ledger.Ledger` per consuming group (design.md "Fault testing"): a confirmed
publish is expected by all three. Exactly once is checked beside the ledger: a second delivery of
an id to one consumer is allowed only when the broker marks it ``redelivered`` (the consumer's
own master died before its ack was durable: AMQP's at-least-once, which no broker avoids; or it
died after delivering a message its link had not yet settled with the source, whose resend the
new master cannot prove new); a second *fresh* copy would be a duplicate made by the network
and is a failure (:attr:`MeshLoad.fresh_copies`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pika
import pika.exceptions

from support.ha_load import CLIENT_ERRORS
from support.ledger import Ledger, LedgerReport
from support.topology import Topology, TopologyGroup

EXCHANGE = "amq.topic"
PROBE = "probe"


def queue_of(group: str) -> str:
    """The durable queue of ``group``'s consumer."""
    return f"orders.{group}"


def connect(group: TopologyGroup) -> pika.BlockingConnection:
    """A pika connection to whichever member of ``group`` serves (its URL list in order)."""
    return pika.BlockingConnection(group.parameters())


class MeshLoad:
    """Publishers and consumers on every group of ``topology``; ledgers of what they saw."""

    def __init__(self, topology: Topology, rate: float | None = 50.0) -> None:
        self.topology = topology
        #: Messages per second per publisher (None: as fast as confirms come back). A paced
        #: load leaves the 2-core test machine the CPU failovers need.
        self.rate = rate
        self.ledgers = {name: Ledger() for name in topology.groups}
        self.lock = threading.Lock()
        #: (consumer group, origin group) -> deliveries of ledger ids.
        self.received: Counter[tuple[str, str]] = Counter()
        #: (consumer group, origin group) of the probes seen (the mesh carries that pair).
        self.probes: set[tuple[str, str]] = set()
        self.fresh_copies: list[tuple[str, str]] = []
        self.redelivered_copies = 0
        self.confirmed: Counter[str] = Counter()
        #: (consumer group, origin group) -> the highest message number received.
        self.latest: Counter[tuple[str, str]] = Counter()
        #: origin group -> the number of its latest publish (sent, not necessarily confirmed).
        self.sent: Counter[str] = Counter()
        self.errors: list[str] = []
        self._publishing = threading.Event()
        self._consuming = threading.Event()
        self._threads: list[threading.Thread] = []
        self._publishers: list[threading.Thread] = []

    # --- consumers -------------------------------------------------------------------------

    def start_consumers(self) -> None:
        """One acking consumer per group (it declares and binds its queue on every connect)."""
        self._consuming.set()
        for name in self.topology.groups:
            self._spawn(self._consume, name)

    def _consume(self, name: str) -> None:
        group = self.topology.groups[name]
        while self._consuming.is_set():
            try:
                connection = connect(group)
                try:
                    self._consume_on(connection.channel(), name)
                finally:
                    if connection.is_open:
                        connection.close()
            except CLIENT_ERRORS as error:
                self._note(name, error)

    def _consume_on(self, channel, name: str) -> None:
        queue = queue_of(name)
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, EXCHANGE, "orders.#")
        channel.basic_qos(prefetch_count=100)
        for method, properties, _body in channel.consume(queue, inactivity_timeout=0.2):
            if not self._consuming.is_set():
                return
            if method is None:
                continue
            self._record(name, properties.message_id, method.redelivered)
            channel.basic_ack(method.delivery_tag)
            if not properties.message_id.startswith(PROBE):
                self.ledgers[name].ack(properties.message_id)

    def _record(self, name: str, message_id: str, redelivered: bool) -> None:
        origin = message_id.split("-")[1 if message_id.startswith(PROBE) else 0]
        with self.lock:
            if message_id.startswith(PROBE):
                self.probes.add((name, origin))
                return
            ledger = self.ledgers[name]
            if message_id in ledger.deliveries:
                if redelivered:
                    self.redelivered_copies += 1
                else:
                    self.fresh_copies.append((name, message_id))
            else:
                self.received[(name, origin)] += 1
                number = int(message_id.rsplit("-", 1)[1])
                self.latest[(name, origin)] = max(self.latest[(name, origin)], number)
            ledger.deliver(message_id)

    # --- publishers ------------------------------------------------------------------------

    def start_publishers(self) -> None:
        """One confirmed publisher per group."""
        self._publishing.set()
        for name in self.topology.groups:
            self._publishers.append(self._spawn(self._publish, name))

    def _publish(self, name: str) -> None:
        group = self.topology.groups[name]
        sequence = iter(range(10**9))
        while self._publishing.is_set():
            try:
                connection = connect(group)
                try:
                    self._publish_on(connection.channel(), name, sequence)
                finally:
                    if connection.is_open:
                        connection.close()
            except CLIENT_ERRORS as error:
                self._note(name, error)

    def _publish_on(self, channel, name: str, sequence) -> None:
        channel.confirm_delivery()
        ledgers = list(self.ledgers.values())
        next_at = time.monotonic()
        while self._publishing.is_set():
            if self.rate is not None:
                next_at = max(next_at + 1 / self.rate, time.monotonic() - 1)
                time.sleep(max(0.0, next_at - time.monotonic()))
            number = next(sequence)
            message_id = f"{name}-{number}"
            self.sent[name] = number
            for ledger in ledgers:
                ledger.publish(message_id)
            properties = pika.BasicProperties(delivery_mode=2, message_id=message_id)
            try:
                channel.basic_publish(EXCHANGE, f"orders.{name}", message_id.encode(), properties)
            except pika.exceptions.NackError:
                continue  # not confirmed: the ledgers expect nothing of it
            for ledger in ledgers:
                ledger.confirm(message_id)
            with self.lock:
                self.confirmed[name] += 1

    def stop_publishers(self) -> None:
        """Stop publishing; return once every publisher finished the publish it was in (so
        nothing is confirmed after a drain began)."""
        self._publishing.clear()
        for thread in self._publishers:
            thread.join(30)

    def stop(self) -> None:
        """Stop every client thread."""
        self._publishing.clear()
        self._consuming.clear()
        for thread in self._threads:
            thread.join(30)

    # --- the mesh ----------------------------------------------------------------------------

    def wait_mesh(self, timeout: float = 90.0) -> float:
        """Publish probes on every group until each consumer got one from every group (the
        network carries every pair); return the seconds it took."""
        started = time.monotonic()
        wanted = {(c, o) for c in self.topology.groups for o in self.topology.groups}
        number = 0
        while time.monotonic() < started + timeout:
            with self.lock:
                if wanted <= self.probes:
                    return time.monotonic() - started
            for name, group in self.topology.groups.items():
                self._probe(group, f"{PROBE}-{name}-{number}")
            number += 1
            self._wait(lambda: wanted <= self.probes, 1.0)
        raise TimeoutError(f"the mesh carries only {sorted(self.probes)}; {self.errors[-5:]}")

    def _probe(self, group: TopologyGroup, message_id: str) -> None:
        try:
            connection = connect(group)
            try:
                connection.channel().basic_publish(
                    EXCHANGE, "orders.probe", b"", pika.BasicProperties(message_id=message_id)
                )
            finally:
                connection.close()
        except CLIENT_ERRORS as error:
            self._note(group.name, error)

    # --- waiting and checking ---------------------------------------------------------------

    def wait_received(self, consumer: str, origin: str, more: int, timeout: float = 60.0) -> None:
        """Wait until ``consumer``'s group got ``more`` new messages from ``origin``'s."""
        with self.lock:
            goal = self.received[(consumer, origin)] + more
        if not self._wait(lambda: self.received[(consumer, origin)] >= goal, timeout):
            raise TimeoutError(
                f"{consumer} got {self.received[(consumer, origin)]} of {goal} from {origin};"
                f" errors: {self.errors[-5:]}"
            )

    def wait_newer(self, consumer: str, origin: str, than: int, timeout: float = 60.0) -> float:
        """Wait until ``consumer``'s group got a message of ``origin``'s numbered above
        ``than`` (published after that one); return ``time.monotonic()`` then."""
        if not self._wait(lambda: self.latest[(consumer, origin)] > than, timeout):
            raise TimeoutError(f"{consumer} got nothing of {origin}'s after {than}")
        return time.monotonic()

    def wait_confirmed(self, origin: str, more: int, timeout: float = 60.0) -> None:
        """Wait until ``origin``'s publisher had ``more`` new messages confirmed."""
        with self.lock:
            goal = self.confirmed[origin] + more
        if not self._wait(lambda: self.confirmed[origin] >= goal, timeout):
            raise TimeoutError(f"{origin} confirmed {self.confirmed[origin]} of {goal}")

    def fault(self) -> None:
        """A fault begins now (acks sent shortly before may be lost): every ledger."""
        for ledger in self.ledgers.values():
            ledger.fault()

    def recovered(self) -> None:
        """The fault is over: every ledger."""
        for ledger in self.ledgers.values():
            ledger.recovered()

    def drain(self, timeout: float = 120.0) -> None:
        """Wait until every consumer got every message confirmed to any publisher."""

        def drained() -> bool:
            return all(ledger.delivered_all_confirmed() for ledger in self.ledgers.values())

        if not self._wait(drained, timeout):
            missing = {
                name: len(ledger.confirmed - ledger.deliveries.keys())
                for name, ledger in self.ledgers.items()
            }
            raise TimeoutError(f"still missing per consumer: {missing}; {self.errors[-5:]}")

    def check(self) -> dict[str, LedgerReport]:
        """Every ledger's invariants, and no fresh copy anywhere; the reports."""
        reports = {name: ledger.check() for name, ledger in self.ledgers.items()}
        assert not self.fresh_copies, f"network duplicates: {self.fresh_copies[:10]}"
        return reports

    def _wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if condition():
                    return True
            time.sleep(0.05)
        with self.lock:
            return condition()

    def _spawn(self, target: Callable[[str], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, args=(name,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _note(self, name: str, error: BaseException) -> None:
        with self.lock:
            self.errors.append(f"{name}: {type(error).__name__}: {error}")
        time.sleep(0.2)  # back off before the next pass through the group's list
