"""A virtual host: its exchanges, queues and bindings, and the rules of declaring them.

Every declare/delete/bind follows RabbitMQ's rules and raises the error RabbitMQ raises
(404, 403, 405, 406). Durable changes are appended to the journal here, in one place, and
control-plane events (``broker.plugins.events``) are fired here after each real change, once
(never per message); consumer events are fired by the queue.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from plugmq.amqp.errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
from plugmq.broker import limits
from plugmq.broker.arguments import (
    EXCHANGE_EQUIVALENCE_KEYS,
    QUEUE_EQUIVALENCE_KEYS,
    assert_equivalent,
    check_exchange_arguments,
)
from plugmq.broker.direct_reply import PREFIX as REPLY_PREFIX
from plugmq.broker.direct_reply import ReplyConsumer
from plugmq.broker.exchange import Exchange
from plugmq.broker.message import Message
from plugmq.broker.queue import Queue
from plugmq.store import records

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker

#: Exchanges every virtual host has (RabbitMQ's set).
STANDARD_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)

Destination = Queue | Exchange
#: What :meth:`VHost.enqueue` returns when a queue refused the message (reject-publish).
REJECTED = -1
_EMPTY: frozenset[Queue] = frozenset()


class VHost:
    """One virtual host."""

    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self.journal = broker.journal
        self.events = broker.plugins.events
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        #: Direct reply-to consumers by the routing key of their replies (see direct_reply).
        self.reply_consumers: dict[str, ReplyConsumer] = {}
        # Announced by announce_standard_exchanges, once plugins were told about the vhost.
        for exchange_name, type_name in STANDARD_EXCHANGES:
            self._new_exchange(exchange_name, type_name, True, False, False, {})

    def __repr__(self) -> str:
        return f"<VHost {self.name!r}>"

    # -- publishing (hot path) ---------------------------------------------------------------

    def route(self, exchange_name: str, message: Message) -> Any:
        """Return the queues ``message`` goes to (a collection, possibly empty).

        Raises :class:`NotFound` for an unknown exchange.
        """
        if not exchange_name:
            return self._route_default(message.routing_key)
        exchange = self.exchanges.get(exchange_name)
        if exchange is None:
            raise NotFound(f"no exchange '{exchange_name}' in vhost '{self.name}'", 60, 40)
        if exchange.internal:
            raise AccessRefused(
                f"cannot publish to internal exchange '{exchange_name}' in vhost '{self.name}'",
                60,
                40,
            )
        return self.route_from(exchange, message)

    def route_from(self, exchange: Exchange, message: Message) -> Any:
        """The queues ``message`` reaches through ``exchange`` (no publish permission checks)."""
        if exchange.has_exchange_destinations or exchange.alternate is not None:
            return self._route_through_exchanges(exchange, message)
        return exchange.route(message)

    def route_dead_letter(self, exchange_name: str, message: Message) -> Any:
        """Route a dead-lettered message; None when its exchange does not exist."""
        if not exchange_name:
            return self._route_default(message.routing_key)
        exchange = self.exchanges.get(exchange_name)
        return None if exchange is None else self.route_from(exchange, message)

    def _route_default(self, routing_key: str) -> Any:
        """The default exchange: the queue named ``routing_key``, or a direct reply-to consumer.

        A reply to a requester that is gone routes nowhere (dropped, or returned when
        mandatory). The reply prefix is only tested when no queue has the name.
        """
        queue = self.queues.get(routing_key)
        if queue is not None:
            return (queue,)
        if routing_key.startswith(REPLY_PREFIX):
            consumer = self.reply_consumers.get(routing_key)
            if consumer is not None:
                return (consumer,)
        return _EMPTY

    def _route_through_exchanges(self, exchange: Exchange, message: Message) -> set[Queue]:
        """Exchange-to-exchange routing: follow exchange destinations, each exchange once.

        An exchange that routes the message nowhere hands it to its ``alternate-exchange``
        (RabbitMQ's rule, https://www.rabbitmq.com/ae.html), itself routed the same way.
        """
        queues: set[Queue] = set()
        seen = {exchange}
        pending = [exchange]
        while pending:
            current = pending.pop()
            routed = current.route(message)
            if not routed and current.alternate is not None:
                routed = self._alternate_of(current)
            for destination in routed:
                if destination.kind == "queue":
                    queues.add(destination)
                elif destination not in seen:
                    seen.add(destination)
                    pending.append(destination)
        return queues

    def _alternate_of(self, exchange: Exchange) -> tuple[Exchange, ...]:
        alternate = self.exchanges.get(exchange.alternate or "")
        return (alternate,) if alternate is not None else ()

    def enqueue(self, queues: Any, message: Message) -> int:
        """Enqueue on every queue; return the journal sequence a confirm must wait for.

        Returns :data:`REJECTED` when a queue refused the message (``x-overflow``
        ``reject-publish``): the publisher is sent basic.nack; other queues still got it.
        """
        seq = 0
        rejected = False
        persistent = message.persistent
        for queue in queues:
            if queue.rejects_publish and limits.would_overflow(queue, message):
                limits.refuse(queue, message)
                rejected = True
                continue
            # A paging queue stores transient messages too, so its tail stays in one place
            # and in order; recovery drops them again.
            if queue.durable and (persistent or queue.paged):
                seq = self._journal_enqueue(queue, message)
                message.unwritten_copies += 1
                queue.enqueue(message, True)
            else:
                queue.enqueue(message, False)
        return REJECTED if rejected else seq

    def _journal_enqueue(self, queue: Queue, message: Message) -> int:
        return self.journal.append(
            records.MessageEnqueued(
                self.name,
                queue.name,
                message.id,
                message.exchange,
                message.routing_key,
                message.header,
                message.body,
                message.redelivered,  # positional arguments: this runs per persistent message
                time.time(),  # enqueued_at, wall clock: TTLs count from it after a restart
            )
        )

    def tail_purged(self, queue: Queue, after_message_id: int) -> None:
        """A purge dropped a queue's paged-out tail: every stored id above the given one."""
        self.journal.append(records.QueuePurged(self.name, queue.name, after_message_id))

    def message_removed(self, queue: Queue, message: Message) -> None:
        """A stored message left a durable queue: journal its removal.

        When that cancels the message's unwritten enqueue and no other copy waits for the
        store, a publisher waiting to confirm it is told at once (see Channel.message_settled).
        """
        if not queue.durable or queue.deleted:
            return
        if self.journal.remove_message(self.name, queue.name, message.id):
            message.unwritten_copies -= 1
            if not message.unwritten_copies and message.confirm_channel is not None:
                message.confirm_channel.message_settled(message)

    # -- exchanges ---------------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type_name: str,
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Exchange:
        """exchange.declare with RabbitMQ's checks, in its order.

        The type is checked first: an unknown one is 406 PRECONDITION_FAILED, a channel
        error, as RabbitMQ 3.13+ (3.12 and older closed the connection with 503). The
        default exchange is refused (403) even to a passive declare.
        """
        arguments = arguments or {}
        if not passive and type_name not in self.broker.exchange_types:
            raise PreconditionFailed(f"unknown exchange type '{type_name}'", 40, 10)
        if not name:
            raise AccessRefused("operation not permitted on the default exchange", 40, 10)
        existing = self.exchanges.get(name)
        if passive:
            if existing is None:
                raise NotFound(f"no exchange '{name}' in vhost '{self.name}'", 40, 10)
            return existing
        if existing is not None:
            self._check_equivalent_exchange(existing, type_name, durable, auto_delete, internal)
            assert_equivalent(
                existing.arguments,
                arguments,
                EXCHANGE_EQUIVALENCE_KEYS,
                f"exchange '{name}' in vhost '{self.name}'",
                40,
                10,
            )
            return existing
        if name.startswith("amq."):
            raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'", 40, 10)
        check_exchange_arguments(arguments, name, self.name)
        exchange = self._create_exchange(name, type_name, durable, auto_delete, internal, arguments)
        if durable:
            self.journal.append(
                records.ExchangeDeclared(
                    self.name, name, type_name, auto_delete, internal, dict(arguments)
                )
            )
        return exchange

    def _create_exchange(
        self,
        name: str,
        type_name: str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: dict[str, Any],
    ) -> Exchange:
        exchange = self._new_exchange(name, type_name, durable, auto_delete, internal, arguments)
        self.events.exchange_declared(self, exchange)
        return exchange

    def _new_exchange(
        self,
        name: str,
        type_name: str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: dict[str, Any],
    ) -> Exchange:
        exchange_class = self.broker.exchange_types.get(type_name)
        if exchange_class is None:
            raise CommandInvalid(f"unknown exchange type '{type_name}'", 40, 10)
        exchange = exchange_class(
            self.name,
            name,
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=arguments,
        )
        self.exchanges[name] = exchange
        return exchange

    def announce_standard_exchanges(self) -> None:
        """Fire ``exchange_declared`` for the ``amq.*`` exchanges, after ``vhost_added``."""
        for exchange_name, _ in STANDARD_EXCHANGES:
            self.events.exchange_declared(self, self.exchanges[exchange_name])

    def _check_equivalent_exchange(
        self, existing: Exchange, type_name: str, durable: bool, auto_delete: bool, internal: bool
    ) -> None:
        for field, received, current in (
            ("type", type_name, existing.type_name),
            ("durable", durable, existing.durable),
            ("auto_delete", auto_delete, existing.auto_delete),
            ("internal", internal, existing.internal),
        ):
            if received != current:
                raise PreconditionFailed(
                    f"inequivalent arg '{field}' for exchange '{existing.name}' in vhost "
                    f"'{self.name}': received '{_fmt(received)}' but current is "
                    f"'{_fmt(current)}'",
                    40,
                    10,
                )

    def delete_exchange(self, name: str, if_unused: bool = False) -> None:
        """exchange.delete; deleting a missing exchange is not an error (RabbitMQ 3.x)."""
        check_exchange_deletable(name, self.name)
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.binding_count:
            raise PreconditionFailed(f"exchange '{name}' in vhost '{self.name}' in use", 40, 20)
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange, journal: bool = True) -> None:
        del self.exchanges[exchange.name]
        for other in list(self.exchanges.values()):  # a copy: auto-delete may cascade
            if other.has_exchange_destinations and self.exchanges.get(other.name) is other:
                self._bindings_gone(other, other.unbind_destination(exchange))
        self._bindings_gone(exchange, list(exchange.bindings()))
        if exchange.durable and journal:
            self.journal.append(records.ExchangeDeleted(self.name, exchange.name))
        self.events.exchange_deleted(self, exchange)

    # -- queues ------------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        *,
        owner: object,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        server_named: bool = False,
    ) -> Queue:
        """queue.declare with RabbitMQ's checks; ``owner`` is the declaring connection.

        ``server_named`` marks a name the broker generated (``amq.gen-...``), the one case
        where the reserved ``amq.`` prefix is allowed.
        """
        arguments = arguments or {}
        existing = self.queues.get(name)
        if passive:
            if existing is None:
                raise NotFound(f"no queue '{name}' in vhost '{self.name}'", 50, 10)
            self.check_exclusive_access(existing, owner, 50, 10)
            existing.touch()
            return existing
        if name.startswith("amq.") and not server_named:
            # Before the lookup, as rabbit_channel's check_name: redeclaring even an existing
            # amq.gen-* queue by name is refused.
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'", 50, 10)
        if existing is not None:
            self._check_same_owner(existing, owner if exclusive else None)
            self._check_equivalent_queue(existing, durable, auto_delete)
            assert_equivalent(
                existing.arguments,
                arguments,
                QUEUE_EQUIVALENCE_KEYS,
                f"queue '{name}' in vhost '{self.name}'",
                50,
                10,
            )
            existing.touch()
            return existing
        queue = Queue(
            self,
            name,
            durable=durable,
            exclusive_owner=owner if exclusive else None,
            auto_delete=auto_delete,
            arguments=arguments,
        )
        self.queues[name] = queue
        if durable and not exclusive:
            self.journal.append(
                records.QueueDeclared(self.name, name, auto_delete, dict(arguments))
            )
        else:
            # Exclusive queues die with their connection; keeping them would resurrect them.
            queue.durable = False
        self.events.queue_declared(self, queue)
        return queue

    def check_exclusive_access(self, queue: Queue, owner: object, class_id: int, method_id: int):
        """Raise 405 RESOURCE_LOCKED when ``queue`` is exclusive to another connection."""
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise self._locked(queue, class_id, method_id)

    def _locked(self, queue: Queue, class_id: int, method_id: int) -> ResourceLocked:
        return ResourceLocked(
            f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost "
            f"'{self.name}'. It could be originally declared on another connection or the "
            "exclusive property value does not match that of the original declaration.",
            class_id,
            method_id,
        )

    def _check_same_owner(self, queue: Queue, owner: object) -> None:
        """The strict check of a non-passive redeclare: same exclusivity, same owner (405).

        RabbitMQ (rabbit_amqqueue:check_exclusive_access, strict) refuses with 405
        RESOURCE_LOCKED even the owner redeclaring its exclusive queue as non-exclusive, and
        anyone redeclaring a shared queue as exclusive.
        """
        if queue.exclusive_owner is not owner:
            raise self._locked(queue, 50, 10)

    def _check_equivalent_queue(self, existing: Queue, durable: bool, auto_delete: bool) -> None:
        current_durable = existing.durable or (existing.exclusive_owner is not None and durable)
        for field, received, current in (
            ("durable", durable, current_durable),
            ("auto_delete", auto_delete, existing.auto_delete),
        ):
            if received != current:
                raise PreconditionFailed(
                    f"inequivalent arg '{field}' for queue '{existing.name}' in vhost "
                    f"'{self.name}': received '{_fmt(received)}' but current is "
                    f"'{_fmt(current)}'",
                    50,
                    10,
                )

    def get_queue(self, name: str, owner: object, class_id: int, method_id: int) -> Queue:
        """The queue named ``name``, checking existence (404) and exclusivity (405)."""
        queue = self.queues.get(name)
        if queue is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'", class_id, method_id)
        self.check_exclusive_access(queue, owner, class_id, method_id)
        return queue

    def exchange_for_binding(
        self, name: str, class_id: int, method_id: int, missing_ok: bool = False
    ) -> Exchange | None:
        """The destination exchange of exchange.bind/unbind: never the default one (403).

        A missing one is 404, or None with ``missing_ok`` (unbind is idempotent).
        """
        if not name:
            raise AccessRefused(
                "operation not permitted on the default exchange", class_id, method_id
            )
        if missing_ok:
            return self.exchanges.get(name)
        return self.get_exchange(name, class_id, method_id)

    def get_exchange(self, name: str, class_id: int, method_id: int) -> Exchange:
        """The exchange named ``name`` (404 when missing)."""
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise NotFound(f"no exchange '{name}' in vhost '{self.name}'", class_id, method_id)
        return exchange

    def delete_queue(self, queue: Queue) -> int:
        """Delete ``queue`` with its bindings; return the number of messages dropped."""
        if queue.deleted:
            return 0
        count = queue.message_count
        queue.deleted = True
        self.queues.pop(queue.name, None)
        for exchange in list(self.exchanges.values()):  # a copy: auto-delete may cascade
            if self.exchanges.get(exchange.name) is exchange:  # not gone in a cascade meanwhile
                self._bindings_gone(exchange, exchange.unbind_destination(queue))
        if queue.durable:
            self.journal.append(records.QueueDeleted(self.name, queue.name))
        for consumer in list(queue.consumers):
            consumer.channel.cancel_by_broker(consumer)
        queue.drop_all()
        self.events.queue_deleted(self, queue)
        return count

    # -- bindings ----------------------------------------------------------------------------

    def _bindings_gone(self, source: Exchange, removed: list) -> None:
        """Tell plugins about bindings removed because their source or destination went.

        An auto-delete source left without bindings goes too (see :meth:`_maybe_auto_delete`).
        """
        for binding in removed:
            self.events.binding_removed(
                self, source.name, binding.destination, binding.routing_key, binding.arguments
            )
        if removed:
            self._maybe_auto_delete(source)

    def _maybe_auto_delete(self, exchange: Exchange) -> None:
        """Delete an auto-delete exchange whose last binding (as the source) just went.

        RabbitMQ's rule: the check runs when a binding is removed, so an auto-delete exchange
        that never had a binding stays. Deleting it may empty, and so delete, the exchanges
        bound to it in turn.
        """
        if (
            exchange.auto_delete
            and not exchange.binding_count
            and self.exchanges.get(exchange.name) is exchange
        ):
            self._remove_exchange(exchange)

    def bind(
        self,
        exchange_name: str,
        destination: Destination,
        routing_key: str,
        arguments: dict[str, Any],
        class_id: int,
        method_id: int,
    ) -> None:
        """Bind ``destination`` to exchange ``exchange_name``."""
        exchange = self._binding_source(exchange_name, class_id, method_id)
        if not exchange.bind(destination, routing_key, arguments):
            return  # an equal binding exists: no change, nothing to journal or announce
        self._journal_binding(records.BindingAdded, exchange, destination, routing_key, arguments)
        self.events.binding_added(self, exchange.name, destination, routing_key, arguments)

    def unbind(
        self,
        exchange_name: str,
        destination: Destination | None,
        routing_key: str,
        arguments: dict[str, Any],
        class_id: int,
        method_id: int,
    ) -> None:
        """Remove a binding; a missing binding, source or destination (None) is not an error.

        RabbitMQ 3.x (``rabbit_binding:remove``) answers unbind-ok in all three cases; only
        the default exchange is refused (403).
        """
        if not exchange_name:
            raise AccessRefused(
                "operation not permitted on the default exchange", class_id, method_id
            )
        exchange = self.exchanges.get(exchange_name)
        if exchange is None or destination is None:
            return
        if not exchange.unbind(destination, routing_key, arguments):
            return
        self._journal_binding(records.BindingRemoved, exchange, destination, routing_key, arguments)
        self.events.binding_removed(self, exchange.name, destination, routing_key, arguments)
        self._maybe_auto_delete(exchange)

    def _binding_source(self, exchange_name: str, class_id: int, method_id: int) -> Exchange:
        """The exchange a bind/unbind names; the default exchange cannot be (un)bound."""
        if not exchange_name:
            raise AccessRefused(
                "operation not permitted on the default exchange", class_id, method_id
            )
        return self.get_exchange(exchange_name, class_id, method_id)

    def _journal_binding(
        self,
        record_type: type[records.BindingAdded] | type[records.BindingRemoved],
        exchange: Exchange,
        destination: Destination,
        routing_key: str,
        arguments: dict[str, Any],
    ) -> None:
        """Journal a binding change when both ends are durable (only then is it stored)."""
        if exchange.durable and destination.durable:
            self.journal.append(
                record_type(
                    self.name,
                    exchange.name,
                    destination.name,
                    destination.kind,
                    routing_key,
                    dict(arguments),
                )
            )

    # -- recovery (no journaling: the records came from the store) ---------------------------

    def restore_exchange(self, record: records.ExchangeDeclared) -> None:
        """Recreate a durable exchange from its record."""
        if record.name not in self.exchanges:
            self._create_exchange(
                record.name,
                record.type,
                True,
                record.auto_delete,
                record.internal,
                dict(record.arguments),
            )

    def restore_queue(self, record: records.QueueDeclared) -> None:
        """Recreate a durable queue from its record."""
        if record.name not in self.queues:
            queue = Queue(
                self,
                record.name,
                durable=True,
                auto_delete=record.auto_delete,
                arguments=dict(record.arguments),
            )
            self.queues[record.name] = queue
            self.events.queue_declared(self, queue)

    def restore_binding(self, record: records.BindingAdded) -> None:
        """Recreate a durable binding; bindings to vanished entities are skipped."""
        source = self.exchanges.get(record.source)
        if record.destination_kind == "queue":
            destination: Destination | None = self.queues.get(record.destination)
        else:
            destination = self.exchanges.get(record.destination)
        if source is None or destination is None:
            return
        arguments = dict(record.arguments)
        if source.bind(destination, record.routing_key, arguments):
            self.events.binding_added(self, source.name, destination, record.routing_key, arguments)

    def delete_everything(self) -> None:
        """The vhost itself is deleted: delete its queues and exchanges.

        Its own exchanges are journaled; the ``amq.*`` ones never were (every vhost has them),
        but they go too and plugins are told.
        """
        for queue in list(self.queues.values()):
            self.delete_queue(queue)
        for exchange in list(self.exchanges.values()):
            if self.exchanges.get(exchange.name) is exchange:  # not gone in a cascade meanwhile
                self._remove_exchange(exchange, journal=not exchange.name.startswith("amq."))

    # -- connections going away --------------------------------------------------------------

    def owner_closed(self, owner: object) -> None:
        """Delete the exclusive queues of a closed connection."""
        for queue in [q for q in self.queues.values() if q.exclusive_owner is owner]:
            self.delete_queue(queue)


def check_exchange_deletable(name: str, vhost: str) -> None:
    """403 for the default exchange and the ``amq.*`` ones, in RabbitMQ's words.

    Checked before the configure permission, as ``rabbit_channel`` does.
    """
    if not name:
        raise AccessRefused("operation not permitted on the default exchange", 40, 20)
    if name.startswith("amq."):
        raise AccessRefused(
            f"deletion of system exchange '{name}' in vhost '{vhost}' not allowed", 40, 20
        )


def _fmt(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
