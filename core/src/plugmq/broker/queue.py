"""Queues, their entries and their consumers.

A queue is a FIFO of :class:`Entry` objects and a ring of :class:`Consumer` objects. Delivery is
push-based and synchronous: enqueueing a message, acknowledging one, adding a consumer or a
connection's output buffer draining calls :meth:`Queue.dispatch`, which hands messages to ready
consumers round-robin until none is ready or the queue is empty. No task is woken per message.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from plugmq.amqp.methods import shortstr
from plugmq.broker.message import Message

if TYPE_CHECKING:
    from plugmq.broker.vhost import VHost


class Entry:
    """A message's place in one queue: its order (``seq``) and delivery state."""

    __slots__ = ("message", "redelivered", "seq", "stored")

    def __init__(self, message: Message, seq: int, stored: bool, redelivered: bool = False):
        self.message = message
        self.seq = seq
        #: True when the store holds this (persistent message, durable queue).
        self.stored = stored
        self.redelivered = redelivered

    def __lt__(self, other: Entry) -> bool:
        return self.seq < other.seq


class DeliverySink(Protocol):
    """What a consumer delivers through: implemented by the broker's channel."""

    def can_deliver(self, consumer: Consumer) -> bool:
        """True when the consumer's prefetch and the connection's buffer allow one more."""
        ...

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        """Send ``entry`` to the consumer's client."""
        ...


class Consumer:
    """A subscription of one channel to one queue (basic.consume)."""

    __slots__ = (
        "arguments",
        "channel",
        "exclusive",
        "no_ack",
        "prefetch",
        "queue",
        "tag",
        "tag_bytes",
        "unacked",
    )

    def __init__(
        self,
        channel: DeliverySink,
        queue: Queue,
        tag: str,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.tag = tag
        #: The tag as an encoded short string, ready for basic.deliver.
        self.tag_bytes = shortstr(tag)
        self.no_ack = no_ack
        self.exclusive = exclusive
        #: Per-consumer prefetch limit (0 = unlimited).
        self.prefetch = prefetch
        self.unacked = 0
        self.arguments = arguments or {}

    def __repr__(self) -> str:
        return f"<Consumer {self.tag!r} on {self.queue.name!r}>"


class Queue:
    """An AMQP queue in a virtual host."""

    kind = "queue"

    def __init__(
        self,
        vhost: VHost,
        name: str,
        *,
        durable: bool = False,
        exclusive_owner: object | None = None,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.vhost = vhost
        self.memory = vhost.broker.memory
        self.name = name
        self.durable = durable
        #: The connection owning an exclusive queue (None for shared queues).
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments or {}
        self.messages: deque[Entry] = deque()
        self.consumers: deque[Consumer] = deque()
        self.unacked = 0
        self.deleted = False
        self._next_seq = 0
        self._had_consumer = False
        #: Totals for statistics.
        self.published = 0
        self.delivered = 0

    def __repr__(self) -> str:
        return f"<Queue {self.vhost.name}/{self.name} {len(self.messages)} msgs>"

    @property
    def message_count(self) -> int:
        """Messages ready for delivery (not counting unacknowledged ones)."""
        return len(self.messages)

    @property
    def consumer_count(self) -> int:
        """Active consumers."""
        return len(self.consumers)

    # -- enqueue and dispatch ----------------------------------------------------------------

    def enqueue(self, message: Message, stored: bool) -> None:
        """Append a routed message and deliver it if a consumer is ready."""
        self._next_seq += 1
        self.messages.append(Entry(message, self._next_seq, stored))
        self.memory.add(message.body_size)
        self.published += 1
        if self.consumers:
            self.dispatch()

    def restore(self, message: Message, redelivered: bool) -> None:
        """Append a message recovered from the store (no dispatch: nobody consumes yet)."""
        self._next_seq += 1
        self.messages.append(Entry(message, self._next_seq, True, redelivered))
        self.memory.add(message.body_size)

    def dispatch(self) -> None:
        """Deliver ready messages to ready consumers, round-robin."""
        messages = self.messages
        consumers = self.consumers
        while messages and consumers:
            consumer = self._next_ready_consumer()
            if consumer is None:
                return
            entry = messages.popleft()
            self.delivered += 1
            consumer.channel.deliver(consumer, entry)

    def _next_ready_consumer(self) -> Consumer | None:
        consumers = self.consumers
        for _ in range(len(consumers)):
            consumer = consumers[0]
            consumers.rotate(-1)
            if consumer.channel.can_deliver(consumer):
                return consumer
        return None

    def get(self) -> Entry | None:
        """Take the head entry for basic.get, or None when the queue is empty."""
        if not self.messages:
            return None
        self.delivered += 1
        return self.messages.popleft()

    # -- settlement --------------------------------------------------------------------------

    def settle(self, entry: Entry) -> None:
        """The entry is done (acked, or delivered with no-ack): forget it durably."""
        self.memory.remove(entry.message.body_size)
        if entry.stored:
            self.vhost.message_removed(self, entry.message)

    def forget(self, entries: Iterable[Entry]) -> None:
        """Entries of a deleted queue came back (requeue after delete): just release them."""
        for entry in entries:
            self.memory.remove(entry.message.body_size)

    def requeue(self, entries: Iterable[Entry]) -> None:
        """Put entries back in their original order, marked redelivered, then dispatch."""
        returning = sorted(entries)
        if not returning:
            return
        for entry in returning:
            entry.redelivered = True
        messages = self.messages
        if not messages or returning[-1].seq < messages[0].seq:
            messages.extendleft(reversed(returning))
        else:
            self.messages = deque(heapq.merge(returning, messages))
        self.dispatch()

    def purge(self) -> int:
        """Drop every ready message; return how many.

        Stored entries are removed one record each rather than by one ``QueuePurged`` record:
        unacknowledged messages survive a purge (as in RabbitMQ) and must stay in the store.
        """
        count = len(self.messages)
        for entry in self.messages:
            self.memory.remove(entry.message.body_size)
            if entry.stored:
                self.vhost.message_removed(self, entry.message)
        self.messages.clear()
        return count

    def drop_all(self) -> None:
        """The queue is deleted: release every ready message (the store drops them itself)."""
        self.forget(self.messages)
        self.messages.clear()

    # -- consumers ---------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        """Subscribe ``consumer`` and start delivering to it."""
        self.consumers.append(consumer)
        self._had_consumer = True
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        """Unsubscribe ``consumer`` (its unacked messages stay with its channel)."""
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return

    @property
    def unused_after_consumers(self) -> bool:
        """True when an auto-delete queue has lost its last consumer and must go."""
        return self.auto_delete and self._had_consumer and not self.consumers
