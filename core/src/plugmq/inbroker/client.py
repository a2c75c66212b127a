"""The in-broker client: a named user's session in one vhost, without a connection.

Every operation goes through the same engine calls a channel makes (VHost declare/bind/route/
enqueue, Queue consumers and settlement, the journal), with the same permission checks and the
same AMQP errors, raised to the caller instead of closing a channel. See docs/plugins.md, "The
in-broker client".
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

from plugmq.amqp.constants import NO_ROUTE
from plugmq.amqp.content import USER_ID_BIT, USER_ID_BYTE, user_id_of
from plugmq.amqp.errors import (
    AccessRefused,
    ChannelError,
    ConnectionForced,
    NotAllowed,
    PreconditionFailed,
)
from plugmq.amqp.methods import shortstr
from plugmq.broker.message import Message
from plugmq.broker.queue import Consumer
from plugmq.inbroker.consumer import Delivery, InBrokerConsumer
from plugmq.inbroker.content import Properties, build_header, check_header
from plugmq.inbroker.durability import DurableCallback, DurableNotifier

if TYPE_CHECKING:
    from plugmq.access import Grant
    from plugmq.broker.broker import Broker
    from plugmq.broker.vhost import VHost

#: A user with this tag may publish messages whose ``user_id`` names someone else (RabbitMQ's
#: ``impersonator`` tag; federation forwards other users' messages).
IMPERSONATOR = "impersonator"


class ClientClosed(ConnectionForced):
    """The in-broker client was closed, or its vhost deleted (320)."""


class Unroutable(ChannelError):
    """A ``mandatory`` publish reached no queue (312 NO_ROUTE; basic.return for a channel)."""

    reply_code = NO_ROUTE


class QueueStatus(NamedTuple):
    """What queue.declare-ok tells: the queue's name (server-named ones too) and counts."""

    name: str
    message_count: int
    consumer_count: int
    #: False for exclusive queues (they die with their owner and are never stored).
    durable: bool


class InBrokerClient:
    """Acts as ``user`` in one vhost; create it with :func:`plugmq.inbroker.open_client`.

    Synchronous methods change the broker at once and raise AMQP errors
    (:mod:`plugmq.amqp.errors`) for what a channel would be closed for. Durable declares are
    on disk only after :meth:`flush`.
    """

    def __init__(self, broker: Broker, vhost: VHost, grant: Grant, *, trusted: bool) -> None:
        self._broker = broker
        self._vhost = vhost
        self._journal = broker.journal
        self._memory = broker.memory
        self.grant = grant
        self._writable = grant.writable
        self._trusted = trusted
        self._durability = DurableNotifier(broker.journal)
        self._consumers: dict[str, InBrokerConsumer] = {}
        #: Cancelled consumers still holding unsettled deliveries (close requeues them).
        self._holding: set[InBrokerConsumer] = set()
        self.closed = False

    @property
    def user(self) -> str:
        """The user this client acts as."""
        return self.grant.user

    @property
    def vhost(self) -> str:
        """The name of the client's vhost."""
        return self._vhost.name

    def __repr__(self) -> str:
        return f"<InBrokerClient {self.user!r} in {self.vhost!r}>"

    def __enter__(self) -> InBrokerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ClientClosed(f"in-broker client of '{self.user}' in '{self.vhost}' is closed")
        if self._broker.vhosts.get(self._vhost.name) is not self._vhost:
            raise ClientClosed(f"vhost '{self._vhost.name}' was deleted")

    # -- flow control --------------------------------------------------------------------------

    @property
    def blocked(self) -> bool:
        """True while the memory alarm is on: the broker blocks publishing connections then.

        Publishing while blocked is not refused (a confirm-critical reply must get out), but a
        plugin moving messages in bulk should ``await`` :meth:`wait_unblocked` first.
        """
        return self._memory.alarm

    async def wait_unblocked(self) -> None:
        """Return once the memory alarm is off (at once when it is)."""
        memory = self._memory
        while memory.alarm:
            await memory.cleared.wait()

    async def flush(self) -> None:
        """Wait until everything journaled so far (declares, publishes, acks) is durable."""
        await self._journal.flush()

    # -- exchanges -----------------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type: str = "direct",
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """exchange.declare (configure permission; 406 when inequivalent)."""
        self._check_open()
        if not passive:
            self.grant.check("configure", "exchange", name, 40, 10)
        self._vhost.declare_exchange(
            name,
            type,
            passive=passive,
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=arguments,
        )

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        """exchange.delete; a missing exchange is not an error (RabbitMQ 3.x)."""
        self._check_open()
        self.grant.check("configure", "exchange", name, 40, 20)
        self._vhost.delete_exchange(name, if_unused=if_unused)

    def bind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """exchange.bind: messages routed by ``source`` also go through ``destination``."""
        self._check_open()
        self.grant.check("write", "exchange", destination, 40, 30)
        self.grant.check("read", "exchange", source, 40, 30)
        target = self._vhost.get_exchange(destination, 40, 30)
        self._vhost.bind(source, target, routing_key, arguments or {}, 40, 30)

    def unbind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """exchange.unbind; a missing binding is not an error."""
        self._check_open()
        self.grant.check("write", "exchange", destination, 40, 40)
        self.grant.check("read", "exchange", source, 40, 40)
        target = self._vhost.get_exchange(destination, 40, 40)
        self._vhost.unbind(source, target, routing_key, arguments or {}, 40, 40)

    # -- queues --------------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str = "",
        *,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> QueueStatus:
        """queue.declare; an empty name gets a server-generated ``amq.gen-...`` one.

        An ``exclusive`` queue belongs to this client: others get 405 on it, and it is deleted
        when the client closes.
        """
        self._check_open()
        server_named = not name and not passive
        if server_named:
            name = "amq.gen-" + secrets.token_urlsafe(16)
        if not passive:
            self.grant.check("configure", "queue", name, 50, 10)
        queue = self._vhost.declare_queue(
            name,
            owner=self,
            passive=passive,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            arguments=arguments,
            server_named=server_named,
        )
        return QueueStatus(queue.name, queue.message_count, queue.consumer_count, queue.durable)

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        """queue.delete; return the number of ready messages dropped (0 for a missing queue)."""
        self._check_open()
        self.grant.check("configure", "queue", name, 50, 40)
        vhost = self._vhost
        queue = vhost.queues.get(name)
        if queue is None:
            return 0
        vhost.check_exclusive_access(queue, self, 50, 40)
        if if_unused and queue.consumer_count:
            raise PreconditionFailed(f"queue '{name}' in vhost '{vhost.name}' in use", 50, 40)
        if if_empty and queue.message_count:
            raise PreconditionFailed(f"queue '{name}' in vhost '{vhost.name}' not empty", 50, 40)
        return vhost.delete_queue(queue)

    def owns(self, queue: str) -> bool:
        """True when ``queue`` is an exclusive queue of this client."""
        found = self._vhost.queues.get(queue)
        return found is not None and found.exclusive_owner is self

    def bind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """queue.bind (write on the queue, read on the exchange)."""
        self._check_open()
        self.grant.check("write", "queue", queue, 50, 20)
        self.grant.check("read", "exchange", exchange, 50, 20)
        target = self._vhost.get_queue(queue, self, 50, 20)
        self._vhost.bind(exchange, target, routing_key, arguments or {}, 50, 20)

    def unbind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """queue.unbind; a missing binding is not an error."""
        self._check_open()
        self.grant.check("write", "queue", queue, 50, 50)
        self.grant.check("read", "exchange", exchange, 50, 50)
        target = self._vhost.get_queue(queue, self, 50, 50)
        self._vhost.unbind(exchange, target, routing_key, arguments or {}, 50, 50)

    # -- publishing ----------------------------------------------------------------------------

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        properties: Properties = None,
        header: bytes | None = None,
        mandatory: bool = False,
        on_durable: DurableCallback | None = None,
        redelivered: bool = False,
    ) -> int:
        """Route and enqueue a message as basic.publish does; return how many queues it reached.

        Give ``properties`` (pamqp ``Basic.Properties`` or a dict of its fields) or ``header``,
        a raw content-header payload passed through untouched (a delivery's ``header``), not
        both. ``on_durable(ok)`` is called exactly once: ``True`` when the message is durable in
        every durable queue it reached (at once, possibly before this returns, when nothing
        needed storing), ``False`` when a queue refused it (``x-overflow`` reject-publish).
        A ``mandatory`` publish that reaches no queue raises :class:`Unroutable` (312) and
        calls nothing; without ``mandatory`` it is dropped and counts as durable.
        ``redelivered`` marks the message as possibly delivered before (a resend the caller
        cannot prove new): consumers get it with ``redelivered`` set, as AMQP asks.
        """
        self._check_open()
        if exchange not in self._writable:  # the publish permission check: one set lookup
            self.grant.check_publish(exchange)
        if header is None:
            header = build_header(len(body), properties)
        elif properties is not None:
            raise ValueError("publish takes properties or a raw header, not both")
        summary = check_header(header, len(body))
        limit = self._broker.max_message_size
        if summary.body_size > limit:
            raise PreconditionFailed(
                f"message size {summary.body_size} is larger than configured max size {limit}",
                60,
                40,
            )
        if header[USER_ID_BYTE] & USER_ID_BIT and not self._trusted:
            self._check_user_id(header)
        message = Message(
            self._broker.next_message_id(),
            exchange,
            routing_key,
            shortstr(exchange) + shortstr(routing_key),
            header,
            body,
            summary.delivery_mode,
            summary.priority,
            summary.expiration,
        )
        if redelivered:
            message.redelivered = True
        queues = self._vhost.route(exchange, message)
        if queues:
            seq = self._vhost.enqueue(queues, message)
        elif mandatory:
            raise Unroutable(f"exchange '{exchange}' routed '{routing_key}' to no queue", 60, 40)
        else:
            seq = 0
        if on_durable is not None:
            self._durability.track(seq, message, on_durable)
        return len(queues)

    async def publish_durably(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        properties: Properties = None,
        header: bytes | None = None,
        mandatory: bool = False,
    ) -> bool:
        """:meth:`publish` and wait for its ``on_durable``; return its ``ok``."""
        done = trio.Event()
        result: list[bool] = []

        def durable(ok: bool) -> None:
            result.append(ok)
            done.set()

        self.publish(
            exchange,
            routing_key,
            body,
            properties=properties,
            header=header,
            mandatory=mandatory,
            on_durable=durable,
        )
        await done.wait()
        return result[0]

    def _check_user_id(self, header: bytes) -> None:
        """RabbitMQ's rule: a ``user_id`` property must name the publishing user (406)."""
        user_id = user_id_of(header)
        if user_id is not None and user_id != self.user:
            raise PreconditionFailed(
                f"user_id property set to '{user_id}' but the publishing user is '{self.user}'",
                60,
                40,
            )

    # -- consuming -----------------------------------------------------------------------------

    def consume(
        self,
        queue: str,
        on_delivery: Callable[[Delivery], object],
        *,
        prefetch: int = 100,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: dict[str, Any] | None = None,
        tag: str | None = None,
        on_cancel: Callable[[InBrokerConsumer], object] | None = None,
    ) -> InBrokerConsumer:
        """basic.consume: ``on_delivery(delivery)`` is called synchronously from the queue's
        dispatch for each message, at most ``prefetch`` unsettled at a time (0: no limit).

        Keep ``on_delivery`` cheap and non-blocking (``send_nowait`` into a memory channel of
        ``prefetch`` slots); it may be called before ``consume`` returns, for messages already
        waiting. ``on_cancel(consumer)`` is called when the broker cancels the consumer because
        its queue was deleted.
        """
        self._check_open()
        if not 0 <= prefetch <= 0xFFFF:
            raise ValueError(f"prefetch {prefetch} is not between 0 and 65535 (basic.qos)")
        self.grant.check("read", "queue", queue, 60, 20)
        target = self._vhost.get_queue(queue, self, 60, 20)
        tag = tag or "plugmq.inbroker-" + secrets.token_urlsafe(12)
        if tag in self._consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'", 60, 20)
        for existing in target.consumers:
            if existing.exclusive or exclusive:
                raise AccessRefused(
                    f"queue '{queue}' in vhost '{self.vhost}' in exclusive use", 60, 20
                )
        consumer = InBrokerConsumer(self, on_delivery, on_cancel)
        engine = Consumer(consumer, target, tag, no_ack, exclusive, prefetch, arguments)
        self._consumers[tag] = consumer
        consumer.attach(engine)  # the queue fires plugmq_consumer_added
        return consumer

    def forget_consumer(self, consumer: InBrokerConsumer) -> None:
        """A consumer stopped, or a stopped one settled its last delivery (called by it)."""
        if self._consumers.get(consumer.tag) is consumer:
            del self._consumers[consumer.tag]
        if consumer.unacked:
            self._holding.add(consumer)
        else:
            self._holding.discard(consumer)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel the consumers, requeue what they hold unsettled (redelivered), and delete
        this client's exclusive queues. Pending ``on_durable`` callbacks still run."""
        if self.closed:
            return
        self.closed = True
        for consumer in list(self._consumers.values()):
            consumer.cancel()
        holding, self._holding = self._holding, set()
        for consumer in holding:
            consumer.requeue_unacked()
        self._vhost.owner_closed(self)
