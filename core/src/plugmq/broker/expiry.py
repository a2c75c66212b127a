"""Time-based expiry: message TTL (``x-message-ttl``, ``expiration``) and queue TTL (``x-expires``).

One broker-wide :class:`Timers` task sleeps until the earliest deadline of any queue; a queue
has at most one message-TTL timer (its head's deadline) and one ``x-expires`` timer. Timers
are lazy: when the head is consumed before it expires, the timer is not moved but fires early,
finds nothing due and re-arms for the new head. Re-arming on every delivery instead would push
a heap entry per message. A task per message (RabbitMQ's own design uses one timer per queue
too) would cost a trio task and a cancel scope per message.

RabbitMQ's rules (https://www.rabbitmq.com/ttl.html): a message expires only when it reaches
the head of its queue, so expired messages behind an unexpired one wait; an expired message is
never delivered; requeued messages keep their original expiry; ``x-message-ttl`` and
``expiration`` combine to the lower of the two; a persistent message's TTL counts from its
original enqueue across restarts (the store keeps its enqueue time).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import structlog
import trio

from plugmq.amqp.errors import PreconditionFailed

if TYPE_CHECKING:
    from plugmq.broker.queue import Queue

log = structlog.get_logger("plugmq.expiry")


def parse_expiration(expiration: str) -> int:
    """The ``expiration`` property in milliseconds; 406 with RabbitMQ's text if invalid."""
    digits = expiration[1:] if expiration[:1] in ("+", "-") else expiration
    length = len(digits) - len(digits.lstrip("0123456789"))
    if length == 0:
        reason = "no_integer"
    elif length < len(digits):
        reason = f'{{leftover_string,"{digits[length:]}"}}'
    else:
        value = int(expiration)
        if value >= 0:
            return value
        reason = f"{{value_negative,{value}}}"
    raise PreconditionFailed(f"invalid expiration '{expiration}': {reason}", 60, 40)


class Timers:
    """Deadlines keyed by (queue, kind), served by one task; callbacks run on the trio thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._armed: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._order = itertools.count()
        self._wake = trio.Event()
        self._running = False

    def arm(self, key: Hashable, deadline: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` at ``deadline`` unless ``key`` is already armed for earlier."""
        current = self._armed.get(key)
        if current is not None and current[0] <= deadline:
            return
        self._armed[key] = (deadline, callback)
        heapq.heappush(self._heap, (deadline, next(self._order), key))
        if self._heap[0][2] == key:
            self._wake.set()

    def disarm(self, key: Hashable) -> None:
        """Forget ``key``'s timer (its heap entry is skipped when it comes up)."""
        self._armed.pop(key, None)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fire due timers until cancelled (started once, when the broker becomes active)."""
        if self._running:
            task_status.started()
            return
        self._running = True
        task_status.started()
        while True:
            self._fire_due(trio.current_time())
            self._wake = trio.Event()
            with trio.move_on_at(self._heap[0][0] if self._heap else math.inf):
                await self._wake.wait()

    def _fire_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            armed = self._armed.get(key)
            if armed is None or armed[0] != deadline:
                continue  # disarmed, or re-armed earlier: a stale entry
            del self._armed[key]
            try:
                armed[1]()
            except Exception:
                # One queue's failure must not stop expiry for every other queue.
                log.exception("expiry_callback_failed", key=repr(key))


# -- message TTL ---------------------------------------------------------------------------


def message_deadline(queue: Queue, message_ttl: int | None, enqueued_at: float = 0.0) -> float:
    """The monotonic deadline of a message in ``queue`` (0.0: never expires).

    A message entering the queue now passes no ``enqueued_at``. One read back from the store
    (recovery, paging in) passes the wall-clock time it was first enqueued, and keeps only
    what is left of its TTL, as RabbitMQ does after a restart.
    """
    queue_ttl = queue.args.message_ttl
    if queue_ttl is None and message_ttl is None:
        return 0.0
    ttl = min(t for t in (queue_ttl, message_ttl) if t is not None) / 1000
    if enqueued_at:
        # Wall clock, because the monotonic clock restarts with the process. If the clock was
        # stepped back since, the elapsed time is negative and counts as 0 (the TTL starts
        # again, never more than a full TTL); stepped forward, messages expire early. RabbitMQ
        # stores the system time too and behaves the same.
        ttl = max(0.0, ttl - max(0.0, time.time() - enqueued_at))
    return trio.current_time() + ttl


def drop_expired_head(queue: Queue, now: float) -> None:
    """Drop (or dead-letter, reason ``expired``) the expired entries at the head of ``queue``."""
    messages = queue.messages
    while messages:
        expires = messages[0].expires
        if not expires or expires > now:
            break
        queue.discard(queue.take_head(), "expired")


def arm_head(queue: Queue) -> None:
    """Arm the queue's message-TTL timer for its head's deadline, if the head can expire."""
    if queue.messages and not queue.deleted:
        expires = queue.messages[0].expires
        if expires:
            queue.vhost.broker.timers.arm((queue, "ttl"), expires, lambda: _head_due(queue))


def _head_due(queue: Queue) -> None:
    if queue.deleted:
        return
    drop_expired_head(queue, trio.current_time())
    queue.dispatch()  # re-arms for the new head
    arm_head(queue)


# -- queue TTL (x-expires) -----------------------------------------------------------------


def arm_unused(queue: Queue) -> None:
    """Start (or keep) the ``x-expires`` countdown of a queue that has no consumer."""
    expires = queue.args.expires
    if expires is not None and not queue.consumers and not queue.deleted:
        deadline = queue.last_used + expires / 1000
        queue.vhost.broker.timers.arm((queue, "expires"), deadline, lambda: _unused_due(queue))


def _unused_due(queue: Queue) -> None:
    """Delete the queue if it stayed unused for ``x-expires``; else wait for the rest."""
    if queue.deleted or queue.consumers:
        return  # losing its last consumer re-arms it
    expires = queue.args.expires
    assert expires is not None
    if trio.current_time() >= queue.last_used + expires / 1000:
        log.info("queue_expired", vhost=queue.vhost.name, queue=queue.name)
        queue.vhost.delete_queue(queue)
    else:
        arm_unused(queue)


def disarm(queue: Queue) -> None:
    """The queue was deleted: drop its timers."""
    timers = queue.vhost.broker.timers
    timers.disarm((queue, "ttl"))
    timers.disarm((queue, "expires"))
