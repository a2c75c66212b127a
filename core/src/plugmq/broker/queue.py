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

import structlog
import trio

from plugmq.amqp.errors import PreconditionFailed
from plugmq.amqp.methods import shortstr
from plugmq.broker.message import Message

if TYPE_CHECKING:
    from plugmq.broker.vhost import VHost

log = structlog.get_logger("plugmq.queue")

#: Messages read back from the store per paging read.
PAGE_IN_BATCH = 2000


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
        "priority",
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
        #: ``x-priority``: a ready consumer of higher priority is always served first.
        self.priority = _consumer_priority(self.arguments)

    def __repr__(self) -> str:
        return f"<Consumer {self.tag!r} on {self.queue.name!r}>"


def _consumer_priority(arguments: dict[str, Any]) -> int:
    """The ``x-priority`` consumer argument (default 0); 406 unless it is an integer."""
    priority = arguments.get("x-priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise PreconditionFailed(
            f"invalid arg 'x-priority' for consumer: {priority!r} is not an integer", 60, 20
        )
    return priority


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
        #: True while consumers of different priorities share the queue (slower dispatch path).
        self._prioritised = False
        # Paging: a durable queue holding more than ``page_limit`` bytes of ready messages keeps
        # its tail only in the store; ``paged`` counts it. Its ids are all above _head_max_id.
        self.page_limit: int = vhost.broker.queue_max_memory
        self.paged = 0
        self._ready_bytes = 0
        self._head_max_id = 0
        self._paging_in = False
        self._page_epoch = 0
        self._page_waiters: list[trio.Event] = []
        #: Totals for statistics.
        self.published = 0
        self.delivered = 0

    def __repr__(self) -> str:
        return f"<Queue {self.vhost.name}/{self.name} {len(self.messages)} msgs>"

    @property
    def message_count(self) -> int:
        """Messages ready for delivery, in memory or paged out (not counting unacked ones)."""
        return len(self.messages) + self.paged

    @property
    def consumer_count(self) -> int:
        """Active consumers."""
        return len(self.consumers)

    # -- enqueue and dispatch ----------------------------------------------------------------

    def enqueue(self, message: Message, stored: bool) -> None:
        """Append a routed message and deliver it if a consumer is ready."""
        self.published += 1
        if stored and self.pages_next():
            self.paged += 1
            return
        self._hold_ready(Entry(message, self._next_seq + 1, stored))
        if self.consumers:
            self.dispatch()

    def _hold_ready(self, entry: Entry) -> None:
        self._next_seq += 1
        entry.seq = self._next_seq
        self.messages.append(entry)
        size = entry.message.body_size
        self._ready_bytes += size
        self.memory.add(size)
        if entry.message.id > self._head_max_id:
            self._head_max_id = entry.message.id

    def pages_next(self) -> bool:
        """True when the next stored message must stay in the store only (paged out)."""
        if self.paged:
            return True
        return (
            self.page_limit > 0
            and self._ready_bytes >= self.page_limit
            and self.durable
            and self.vhost.journal.enabled
        )

    def restore(self, message: Message, redelivered: bool) -> None:
        """Append a message recovered from the store (no dispatch: nobody consumes yet)."""
        self._hold_ready(Entry(message, 0, True, redelivered))

    def restore_paged(self) -> None:
        """Count a recovered message that stays in the store (the queue is over its limit)."""
        self.paged += 1

    def dispatch(self) -> None:
        """Deliver ready messages to ready consumers, round-robin."""
        messages = self.messages
        consumers = self.consumers
        while messages and consumers:
            consumer = self._next_ready_consumer()
            if consumer is None:
                return
            entry = messages.popleft()
            self._ready_bytes -= entry.message.body_size
            self.delivered += 1
            consumer.channel.deliver(consumer, entry)
        self._maybe_page_in()

    def _next_ready_consumer(self) -> Consumer | None:
        consumers = self.consumers
        if self._prioritised:
            return self._next_ready_by_priority()
        for _ in range(len(consumers)):
            consumer = consumers[0]
            consumers.rotate(-1)
            if consumer.channel.can_deliver(consumer):
                return consumer
        return None

    def get(self) -> Entry | None:
        """Take the head entry for basic.get, or None when the queue is empty."""
        if not self.messages:
            self._maybe_page_in()
            return None
        self.delivered += 1
        entry = self.messages.popleft()
        self._ready_bytes -= entry.message.body_size
        self._maybe_page_in()
        return entry

    # -- paging ------------------------------------------------------------------------------

    def _maybe_page_in(self) -> None:
        if self.paged and not self._paging_in and self._ready_bytes < self.page_limit // 2:
            self._paging_in = True
            self.vhost.broker.spawn(self._page_in)

    async def _page_in(self) -> None:
        """Read the tail back from the store until the queue holds half its limit again."""
        try:
            while self.paged and not self.deleted and self._ready_bytes < self.page_limit // 2:
                epoch = self._page_epoch
                records = await self.vhost.journal.read_queue(
                    self.vhost.name, self.name, self._head_max_id, PAGE_IN_BATCH
                )
                if epoch != self._page_epoch or self.deleted:
                    continue  # purged or deleted meanwhile: what was read is gone
                if not records:
                    log.error("paged_messages_missing", queue=self.name, paged=self.paged)
                    self.paged = 0
                    break
                for record in records:
                    message = Message.from_record(record)
                    self._hold_ready(Entry(message, 0, True, record.redelivered))
                self.paged -= len(records)
                self.dispatch()
        finally:
            self._paging_in = False
            waiters, self._page_waiters = self._page_waiters, []
            for waiter in waiters:
                waiter.set()

    async def wait_paged_in(self) -> None:
        """Wait for the next paging pass (basic.get found the head empty, the tail not)."""
        waiter = trio.Event()
        self._page_waiters.append(waiter)
        self._maybe_page_in()
        if self._paging_in:
            await waiter.wait()

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
            self._ready_bytes += entry.message.body_size
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
        count = self.message_count
        for entry in self.messages:
            self.memory.remove(entry.message.body_size)
            if entry.stored:
                self.vhost.message_removed(self, entry.message)
        self.messages.clear()
        self._ready_bytes = 0
        if self.paged:
            self.vhost.tail_purged(self, self._head_max_id)
            self.paged = 0
            self._page_epoch += 1
        return count

    def drop_all(self) -> None:
        """The queue is deleted: release every ready message (the store drops them itself)."""
        self.forget(self.messages)
        self.messages.clear()
        self._ready_bytes = 0
        self.paged = 0
        self._page_epoch += 1

    # -- consumers ---------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        """Subscribe ``consumer`` and start delivering to it."""
        self.consumers.append(consumer)
        self._had_consumer = True
        self._update_prioritised()
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        """Unsubscribe ``consumer`` (its unacked messages stay with its channel)."""
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return
        self._update_prioritised()

    def _update_prioritised(self) -> None:
        """Use the priority-aware dispatch only while consumer priorities differ."""
        consumers = self.consumers
        self._prioritised = any(c.priority != consumers[0].priority for c in consumers)

    def _next_ready_by_priority(self) -> Consumer | None:
        """The first ready consumer of the highest priority, moved to the back of the ring.

        Consumers of lower priority get messages only while every higher one is blocked
        (prefetch full, or its connection not writable); equal priorities take turns. This
        is RabbitMQ's consumer priority rule.
        """
        best: Consumer | None = None
        for consumer in self.consumers:
            if best is not None and consumer.priority <= best.priority:
                continue
            if consumer.channel.can_deliver(consumer):
                best = consumer
        if best is not None:
            self.consumers.remove(best)
            self.consumers.append(best)
        return best

    @property
    def unused_after_consumers(self) -> bool:
        """True when an auto-delete queue has lost its last consumer and must go."""
        return self.auto_delete and self._had_consumer and not self.consumers
