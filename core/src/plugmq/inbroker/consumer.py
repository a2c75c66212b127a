"""Consuming a queue from inside the broker: :class:`InBrokerConsumer` and :class:`Delivery`.

An :class:`InBrokerConsumer` is the delivery sink of one engine consumer (the
``can_deliver``/``deliver`` protocol a channel implements). The queue calls it synchronously
from its dispatch, which runs inside whatever made the message ready (a publisher's read
pass, an ack, a timer). So ``on_delivery`` must be cheap and must not block: the intended use
is ``send_nowait`` into a trio memory channel at least as large as the prefetch, which can
never overflow because the queue stops delivering at ``prefetch`` unacknowledged messages.

Settling a delivery is exactly what a channel's basic.ack/nack/reject does (broker/channel.py
``_settle``, ``_requeue``, ``_dead_letter``): the queue releases the entry and journals its
removal, requeues it marked redelivered, or dead-letters it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
import trio
from pamqp import commands

from plugmq.amqp.content import decode_properties
from plugmq.amqp.errors import PreconditionFailed

if TYPE_CHECKING:
    from plugmq.broker.queue import Consumer, Entry
    from plugmq.inbroker.client import InBrokerClient

log = structlog.get_logger("plugmq.inbroker")

_UNDECODED: Any = object()


class Delivery:
    """One message handed to an in-broker consumer.

    ``header`` is the content-header payload exactly as published (pass it to
    :meth:`InBrokerClient.publish` or a remote publish untouched for the fast path);
    ``properties`` decodes it on first use. Settle it once with :meth:`ack`, :meth:`nack` or
    :meth:`reject` (unless the consumer is ``no_ack``); settling twice, or after the client
    closed (which requeued it), raises 406 :class:`~plugmq.amqp.errors.PreconditionFailed`.
    """

    __slots__ = (
        "_consumer",
        "_entry",
        "_properties",
        "body",
        "delivery_tag",
        "exchange",
        "header",
        "redelivered",
        "routing_key",
    )

    def __init__(self, consumer: InBrokerConsumer, entry: Entry, delivery_tag: int) -> None:
        message = entry.message
        self._consumer = consumer
        self._entry = entry
        self._properties: commands.Basic.Properties = _UNDECODED
        self.delivery_tag = delivery_tag
        self.exchange: str = message.exchange
        self.routing_key: str = message.routing_key
        self.redelivered: bool = entry.redelivered
        self.header: bytes = message.header
        self.body: bytes = message.body

    @property
    def properties(self) -> commands.Basic.Properties:
        """The message's properties (pamqp ``Basic.Properties``), decoded on first use."""
        if self._properties is _UNDECODED:
            self._properties = decode_properties(self.header)
        return self._properties

    @property
    def persistent(self) -> bool:
        """True for ``delivery_mode`` 2 (read without decoding the properties)."""
        return self._entry.message.persistent

    def ack(self) -> None:
        """Done with it: the queue forgets it (durably, for a stored message)."""
        self._consumer.settle(self, "ack")

    def nack(self, requeue: bool = True) -> None:
        """Give it back to the queue (redelivered), or dead-letter it when ``requeue`` is False."""
        self._consumer.settle(self, "requeue" if requeue else "reject")

    def reject(self) -> None:
        """Refuse it for good: dead-lettered where the queue has a dead-letter exchange."""
        self._consumer.settle(self, "reject")

    def __repr__(self) -> str:
        return f"<Delivery {self.delivery_tag} {self.exchange!r}/{self.routing_key!r}>"


class InBrokerConsumer:
    """A subscription of an in-broker client to one queue; see :meth:`InBrokerClient.consume`."""

    def __init__(
        self,
        client: InBrokerClient,
        on_delivery: Callable[[Delivery], object],
        on_cancel: Callable[[InBrokerConsumer], object] | None,
    ) -> None:
        self.client = client
        self._on_delivery = on_delivery
        self._on_cancel = on_cancel
        self._engine: Consumer = None  # type: ignore[assignment]  # set by attach()
        self._unacked: dict[int, Delivery] = {}
        self._tag = 0
        self.paused = False
        #: Set when the consumer stops: cancelled by its owner, by the client's close, or by
        #: the broker (its queue was deleted; then :attr:`cancelled_by_broker` is True).
        self.cancelled = trio.Event()
        self.cancelled_by_broker = False

    def attach(self, engine: Consumer) -> None:
        """Start consuming through the engine consumer (called once by the client)."""
        self._engine = engine
        engine.queue.add_consumer(engine)

    @property
    def tag(self) -> str:
        """The consumer tag (unique within its client)."""
        return self._engine.tag

    @property
    def queue(self) -> str:
        """The name of the consumed queue."""
        return self._engine.queue.name

    @property
    def prefetch(self) -> int:
        """Unacknowledged deliveries at which the queue stops delivering (0: no limit)."""
        return self._engine.prefetch

    @property
    def unacked(self) -> int:
        """Deliveries handed out and not settled yet."""
        return len(self._unacked)

    # -- flow control --------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop deliveries (messages stay ready in the queue) until :meth:`resume`."""
        self.paused = True

    def resume(self) -> None:
        """Deliver again, at once if messages are waiting."""
        if self.paused:
            self.paused = False
            queue = self._engine.queue
            if not queue.deleted and not self.cancelled.is_set():
                queue.dispatch()

    # -- the delivery sink protocol (called by the queue, synchronously) -----------------------

    def can_deliver(self, consumer: Consumer) -> bool:
        """Prefetch is the flow control: no more than ``prefetch`` unacknowledged at once."""
        if self.paused:
            return False
        return not consumer.prefetch or consumer.unacked < consumer.prefetch

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        """Hand ``entry`` to the owner's ``on_delivery``."""
        self._tag += 1
        delivery = Delivery(self, entry, self._tag)
        queue = consumer.queue
        if consumer.no_ack:
            queue.settle(entry)
        else:
            consumer.unacked += 1
            self._unacked[self._tag] = delivery
            if entry.stored and not entry.redelivered:
                vhost = queue.vhost
                vhost.journal.note_delivered(vhost.name, queue.name, entry.message.id)
        try:
            self._on_delivery(delivery)
        except Exception:
            # The queue's dispatch runs in someone else's task (a publisher's connection): a
            # failing callback must not close it. Stop and give the message back instead.
            log.exception("inbroker_delivery_failed", queue=queue.name, tag=consumer.tag)
            self.paused = True
            if not consumer.no_ack:
                self.settle(delivery, "requeue")

    def cancel_by_broker(self, consumer: Consumer) -> None:
        """The queue was deleted: stop, and tell the owner (``on_cancel``, :attr:`cancelled`)."""
        consumer.queue.remove_consumer(consumer)
        self.cancelled_by_broker = True
        self._stopped()
        if self._on_cancel is not None:
            try:
                self._on_cancel(self)
            except Exception:
                log.exception("inbroker_cancel_callback_failed", tag=consumer.tag)

    # -- settling ------------------------------------------------------------------------------

    def settle(self, delivery: Delivery, outcome: str) -> None:
        """Ack (``"ack"``), requeue (``"requeue"``) or dead-letter (``"reject"``) a delivery."""
        if self._unacked.pop(delivery.delivery_tag, None) is None:
            raise PreconditionFailed(
                f"delivery {delivery.delivery_tag} of consumer '{self.tag}' is not awaiting an "
                "acknowledgement (settled already, no-ack, or requeued by close)",
                60,
                80,
            )
        engine = self._engine
        engine.unacked -= 1
        if not self._unacked and self.cancelled.is_set():
            self.client.forget_consumer(self)  # nothing left for close() to requeue
        queue = engine.queue
        entry = delivery._entry
        if outcome == "ack":
            queue.settle(entry)
            queue.dispatch()
        elif outcome == "requeue":
            if queue.deleted:
                queue.forget((entry,))
            else:
                queue.requeue((entry,))
        else:
            queue.discard(entry, "rejected")
            queue.dispatch()

    def requeue_unacked(self) -> None:
        """Give every unsettled delivery back to the queue, in order, marked redelivered."""
        unacked, self._unacked = self._unacked, {}
        if not unacked:
            return
        engine = self._engine
        engine.unacked -= len(unacked)
        entries = [delivery._entry for delivery in unacked.values()]
        if engine.queue.deleted:
            engine.queue.forget(entries)
        else:
            engine.queue.requeue(entries)

    # -- cancelling ----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop consuming (basic.cancel). Unsettled deliveries stay with the client and can still
        be settled; closing the client requeues them. An auto-delete queue left without
        consumers is deleted, as after a channel's cancel."""
        if self.cancelled.is_set():
            return
        engine = self._engine
        queue = engine.queue
        queue.remove_consumer(engine)  # fires plugmq_consumer_removed
        self._stopped()
        if queue.unused_after_consumers and not queue.deleted:
            queue.vhost.delete_queue(queue)

    def _stopped(self) -> None:
        self.client.forget_consumer(self)
        self.cancelled.set()

    def __repr__(self) -> str:
        return f"<InBrokerConsumer {self.tag!r} on {self.queue!r}>"
