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
from plugmq.broker import dead_letter, expiry, limits
from plugmq.broker.arguments import PLAIN, parse_queue_arguments
from plugmq.broker.message import Message
from plugmq.broker.priority import PriorityMessages

if TYPE_CHECKING:
    from plugmq.broker.vhost import VHost

log = structlog.get_logger("plugmq.queue")

#: Bytes of Python objects per held message (Entry, Message, header, key bytes); measured
#: ~1 KiB per 100-byte message held after recovering 300k of them.
ENTRY_OVERHEAD = 1000

#: Messages read back from the store per paging read.
PAGE_IN_BATCH = 2000


class Entry:
    """A message's place in one queue: its order (``seq``) and delivery state."""

    __slots__ = ("message", "redelivered", "seq", "stored")

    #: Monotonic deadline of a message with a TTL (0.0: never; see :class:`TimedEntry`).
    expires: float = 0.0

    def __init__(self, message: Message, seq: int, stored: bool, redelivered: bool = False):
        self.message = message
        self.seq = seq
        #: True when the store holds this (persistent message, durable queue).
        self.stored = stored
        self.redelivered = redelivered

    def __lt__(self, other: Entry) -> bool:
        return self.seq < other.seq


class TimedEntry(Entry):
    """An entry that expires (queue or message TTL); plain entries do not carry the slot."""

    __slots__ = ("expires",)

    def __init__(self, message: Message, stored: bool, redelivered: bool, expires: float):
        super().__init__(message, 0, stored, redelivered)
        self.expires = expires


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
        #: The arguments the engine acts on (TTL, limits, dead-lettering...), validated.
        self.args = parse_queue_arguments(self.arguments, name, vhost.name)
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
        self._paged_bytes = 0
        #: Totals for statistics.
        self.published = 0
        self.delivered = 0
        self._apply_arguments()

    def _apply_arguments(self) -> None:
        """Set the flags that send a queue with arguments through the slower paths.

        A queue declared without any argument the engine acts on keeps the plain paths: one
        flag test per publish and per dispatch pass, nothing per message it holds.
        """
        args = self.args
        self._special = args is not PLAIN
        #: Refuse publishes over the limits (checked by the vhost before journaling).
        self.rejects_publish = args.rejects_publish
        #: Sticky once an entry with a deadline was held: dispatch checks the head's expiry.
        self._may_expire = args.message_ttl is not None
        self._single_active = args.single_active_consumer
        self._paged_deadlines: dict[int, float] = {}
        #: When the queue was last used (x-expires): declared, polled, left by a consumer.
        self.last_used = trio.current_time() if args.expires is not None else 0.0
        if args.max_priority is not None:
            self.messages = PriorityMessages(args.max_priority)  # type: ignore[assignment]
        expiry.arm_unused(self)

    def __repr__(self) -> str:
        return f"<Queue {self.vhost.name}/{self.name} {len(self.messages)} msgs>"

    @property
    def message_count(self) -> int:
        """Messages ready for delivery, in memory or paged out (not counting unacked ones)."""
        return len(self.messages) + self.paged

    @property
    def ready_bytes(self) -> int:
        """Body bytes of the ready messages, in memory or paged out."""
        return self._ready_bytes + self._paged_bytes

    @property
    def consumer_count(self) -> int:
        """Active consumers."""
        return len(self.consumers)

    # -- enqueue and dispatch ----------------------------------------------------------------

    def enqueue(self, message: Message, stored: bool) -> None:
        """Append a routed message and deliver it if a consumer is ready."""
        self.published += 1
        if self._special or message.ttl is not None:
            self._enqueue_special(message, stored)
            return
        if stored and self.pages_next():
            self._page_out(message)
            return
        self._hold_ready(Entry(message, self._next_seq + 1, stored, message.redelivered))
        if self.consumers:
            self.dispatch()

    def _page_out(self, message: Message, deadline: float = 0.0) -> None:
        self.paged += 1
        self._paged_bytes += message.body_size
        if deadline:
            self._paged_deadlines[message.id] = deadline

    def _enqueue_special(self, message: Message, stored: bool) -> None:
        """Enqueue on a queue with TTL, limits or priorities (or a message with a TTL).

        As RabbitMQ does, delivery to a waiting consumer is tried first (so a TTL of 0 still
        reaches a ready consumer); a message left waiting may take the queue over its limits.
        """
        deadline = expiry.message_deadline(self, message.ttl)
        if stored and self.pages_next():
            self._page_out(message, deadline)
        else:
            entry = self._new_entry(message, stored, message.redelivered, deadline)
            self._hold_ready(entry)
            if self.consumers and len(self.messages) == 1 and not self.paged:
                self._deliver_head()
        if self.args.limited:
            limits.drop_head(self)
        if self.consumers or self._may_expire:
            self.dispatch()

    def _deliver_head(self) -> None:
        """Hand the head to a ready consumer without looking at its deadline (just enqueued)."""
        consumer = self._next_ready_consumer()
        if consumer is not None:
            self.delivered += 1
            consumer.channel.deliver(consumer, self.take_head())

    def _new_entry(
        self, message: Message, stored: bool, redelivered: bool, deadline: float
    ) -> Entry:
        if not deadline:
            return Entry(message, 0, stored, redelivered)
        self._may_expire = True
        return TimedEntry(message, stored, redelivered, deadline)

    def take_head(self) -> Entry:
        """Remove the head entry to drop it (expiry, length limit), not to deliver it."""
        entry = self.messages.popleft()
        self._ready_bytes -= entry.message.body_size
        return entry

    def discard(self, entry: Entry, reason: str) -> None:
        """An entry dies in this queue (``expired``, ``maxlen``, ``rejected``).

        It is dead-lettered first when the queue has a dead-letter exchange (so a crash in
        between duplicates rather than loses it), then released like an acked entry.
        """
        if self.args.dead_letter_exchange is not None and not self.deleted:
            dead_letter.republish(self, entry.message, reason)
        self.settle(entry)

    def dead_letter(self, message: Message, reason: str) -> None:
        """Dead-letter a message that never entered the queue (reject-publish-dlx)."""
        if self.args.dead_letter_exchange is not None:
            dead_letter.republish(self, message, reason)

    def _hold_ready(self, entry: Entry) -> None:
        self._next_seq += 1
        entry.seq = self._next_seq
        self.messages.append(entry)
        size = entry.message.body_size
        self._ready_bytes += size
        self.memory.add(size)
        if entry.message.id > self._head_max_id:
            self._head_max_id = entry.message.id

    @property
    def held_in_memory(self) -> int:
        """Estimated memory of the ready messages held: bodies plus per-message objects.

        Counting bodies alone let a queue of a million 100-byte messages hold ~500 MiB
        under a 64 MiB limit; each held message costs ~ENTRY_OVERHEAD bytes of Python objects.
        """
        return self._ready_bytes + len(self.messages) * ENTRY_OVERHEAD

    def pages_next(self) -> bool:
        """True when the next stored message must stay in the store only (paged out)."""
        if self.paged:
            return True
        return (
            self.page_limit > 0
            and self.held_in_memory >= self.page_limit
            and self.durable
            and self.vhost.journal.enabled
        )

    def restore(self, message: Message, redelivered: bool, enqueued_at: float = 0.0) -> None:
        """Append a message recovered from the store (no dispatch: nobody consumes yet).

        Its TTL counts from ``enqueued_at`` (wall clock; 0.0 when the store did not know it:
        the TTL then starts again from recovery).
        """
        deadline = expiry.message_deadline(self, message.ttl, enqueued_at)
        self._hold_ready(self._new_entry(message, True, redelivered, deadline))
        if deadline:
            expiry.arm_head(self)

    def restore_paged(self, size: int = 0) -> None:
        """Count a recovered message that stays in the store (the queue is over its limit)."""
        self.paged += 1
        self._paged_bytes += size

    def dispatch(self) -> None:
        """Deliver ready messages to ready consumers, round-robin."""
        if self._may_expire:
            self._dispatch_expiring()
            return
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

    def _dispatch_expiring(self) -> None:
        """:meth:`dispatch` for a queue whose entries may expire: never deliver an expired one.

        Expired entries are dropped at the head before each delivery (RabbitMQ's ``fetch``
        drops expired messages after every fetch), then the TTL timer is armed for the head.
        """
        now = trio.current_time()
        messages = self.messages
        while True:
            expiry.drop_expired_head(self, now)
            if not messages or not self.consumers:
                break
            consumer = self._next_ready_consumer()
            if consumer is None:
                break
            self.delivered += 1
            consumer.channel.deliver(consumer, self.take_head())
        self._maybe_page_in()
        expiry.arm_head(self)

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
        if self._special or self._may_expire:
            self._polled()
        if not self.messages:
            self._maybe_page_in()
            return None
        self.delivered += 1
        entry = self.messages.popleft()
        self._ready_bytes -= entry.message.body_size
        self._maybe_page_in()
        return entry

    def _polled(self) -> None:
        """basic.get on a queue with arguments: it counts as use; expired heads go first."""
        if self.args.expires is not None:
            self.touch()
        if self._may_expire:
            expiry.drop_expired_head(self, trio.current_time())

    def touch(self) -> None:
        """The queue was used (redeclared, polled): restart its ``x-expires`` countdown."""
        if self.args.expires is not None:
            self.last_used = trio.current_time()

    # -- paging ------------------------------------------------------------------------------

    def _maybe_page_in(self) -> None:
        if self.paged and not self._paging_in and self.held_in_memory < self.page_limit // 2:
            self._paging_in = True
            self.vhost.broker.spawn(self._page_in)

    async def _page_in(self) -> None:
        """Read the tail back from the store until the queue holds half its limit again."""
        try:
            while self.paged and not self.deleted and self.held_in_memory < self.page_limit // 2:
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
                    self._hold_ready(
                        self._paged_in(message, record.redelivered, record.enqueued_at)
                    )
                self.paged -= len(records)
                self.dispatch()
        finally:
            self._paging_in = False
            waiters, self._page_waiters = self._page_waiters, []
            for waiter in waiters:
                waiter.set()

    def _paged_in(self, message: Message, redelivered: bool, enqueued_at: float) -> Entry:
        self._paged_bytes -= message.body_size
        deadline = self._paged_deadlines.pop(message.id, None)
        if deadline is None:  # recovered paged out: counts from its stored enqueue time
            deadline = expiry.message_deadline(self, message.ttl, enqueued_at)
        return self._new_entry(message, True, redelivered, deadline)

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
        if isinstance(messages, PriorityMessages):
            messages.requeue(returning)
        elif not messages or returning[-1].seq < messages[0].seq:
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
            self._paged_bytes = 0
            self._paged_deadlines.clear()
            self._page_epoch += 1
        return count

    def drop_all(self) -> None:
        """The queue is deleted: release every ready message (the store drops them itself)."""
        self.forget(self.messages)
        self.messages.clear()
        self._ready_bytes = 0
        self.paged = 0
        self._paged_bytes = 0
        self._paged_deadlines.clear()
        self._page_epoch += 1
        expiry.disarm(self)

    # -- consumers ---------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        """Subscribe ``consumer``, start delivering to it, fire ``consumer_added``."""
        self.consumers.append(consumer)
        self._had_consumer = True
        self._update_prioritised()
        self.dispatch()
        self.vhost.events.consumer_added(self.vhost, self, consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        """Unsubscribe ``consumer`` (its unacked messages stay with its channel).

        Every way a consumer leaves (cancel, channel or connection closing, queue deleted)
        comes here, so this is where ``consumer_removed`` fires: once, as a consumer that is
        no longer subscribed returns early.
        """
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return
        self._update_prioritised()
        if self._special and not self.deleted:
            self._consumer_left()
        self.vhost.events.consumer_removed(self.vhost, self, consumer)

    def _consumer_left(self) -> None:
        """A single active consumer hands over to the next; an unused queue starts to expire."""
        if not self.consumers:
            self.touch()
            expiry.arm_unused(self)
        elif self._single_active:
            self.dispatch()

    def _update_prioritised(self) -> None:
        """Use the priority-aware dispatch only while consumer priorities differ."""
        consumers = self.consumers
        self._prioritised = self._single_active or any(
            c.priority != consumers[0].priority for c in consumers
        )

    def _next_ready_by_priority(self) -> Consumer | None:
        """The first ready consumer of the highest priority, moved to the back of the ring.

        Consumers of lower priority get messages only while every higher one is blocked
        (prefetch full, or its connection not writable); equal priorities take turns. This
        is RabbitMQ's consumer priority rule.

        With ``x-single-active-consumer`` only the earliest subscribed consumer receives
        messages; the next one takes over when it goes (RabbitMQ 3.10 classic queues).
        """
        if self._single_active:
            active = self.consumers[0] if self.consumers else None
            return active if active is not None and active.channel.can_deliver(active) else None
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
