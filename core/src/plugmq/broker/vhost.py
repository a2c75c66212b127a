"""A virtual host: its exchanges, queues and bindings, and the rules of declaring them.

Every declare/delete/bind follows RabbitMQ's rules and raises the error RabbitMQ raises
(404, 403, 405, 406). Durable changes are appended to the journal here, in one place, and
control-plane hooks are called here after each change (never per message).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugmq.amqp.errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
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
_EMPTY: frozenset[Queue] = frozenset()


class VHost:
    """One virtual host."""

    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self.journal = broker.journal
        self.hooks = broker.plugins.hook
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        for exchange_name, type_name in STANDARD_EXCHANGES:
            self._create_exchange(exchange_name, type_name, True, False, False, {})

    def __repr__(self) -> str:
        return f"<VHost {self.name!r}>"

    # -- publishing (hot path) ---------------------------------------------------------------

    def route(self, exchange_name: str, message: Message) -> Any:
        """Return the queues ``message`` goes to (a collection, possibly empty).

        Raises :class:`NotFound` for an unknown exchange.
        """
        if not exchange_name:
            queue = self.queues.get(message.routing_key)
            return (queue,) if queue is not None else _EMPTY
        exchange = self.exchanges.get(exchange_name)
        if exchange is None:
            raise NotFound(f"no exchange '{exchange_name}' in vhost '{self.name}'", 60, 40)
        if exchange.internal:
            raise AccessRefused(
                f"cannot publish to internal exchange '{exchange_name}' in vhost '{self.name}'",
                60,
                40,
            )
        if exchange.has_exchange_destinations:
            return self._route_through_exchanges(exchange, message)
        return exchange.route(message)

    def _route_through_exchanges(self, exchange: Exchange, message: Message) -> set[Queue]:
        """Exchange-to-exchange routing: follow exchange destinations, each exchange once."""
        queues: set[Queue] = set()
        seen = {exchange}
        pending = [exchange]
        while pending:
            for destination in pending.pop().route(message):
                if destination.kind == "queue":
                    queues.add(destination)
                elif destination not in seen:
                    seen.add(destination)
                    pending.append(destination)
        return queues

    def enqueue(self, queues: Any, message: Message) -> int:
        """Enqueue on every queue; return the journal sequence a confirm must wait for."""
        seq = 0
        persistent = message.persistent
        for queue in queues:
            # A paging queue stores transient messages too, so its tail stays in one place
            # and in order; recovery drops them again.
            if queue.durable and (persistent or queue.paged):
                seq = self._journal_enqueue(queue, message)
                queue.enqueue(message, True)
            else:
                queue.enqueue(message, False)
        return seq

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
            )
        )

    def tail_purged(self, queue: Queue, after_message_id: int) -> None:
        """A purge dropped a queue's paged-out tail: every stored id above the given one."""
        self.journal.append(records.QueuePurged(self.name, queue.name, after_message_id))

    def message_removed(self, queue: Queue, message: Message) -> None:
        """A stored message left a durable queue: journal its removal."""
        if queue.durable and not queue.deleted:
            self.journal.append(records.MessageRemoved(self.name, queue.name, message.id))

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
        """exchange.declare with RabbitMQ's checks."""
        arguments = arguments or {}
        existing = self.exchanges.get(name)
        if passive:
            if existing is None:
                raise NotFound(f"no exchange '{name}' in vhost '{self.name}'", 40, 10)
            return existing
        if not name:
            raise AccessRefused("operation not permitted on the default exchange", 40, 10)
        if existing is not None:
            self._check_equivalent_exchange(existing, type_name, durable, auto_delete, internal)
            return existing
        if name.startswith("amq."):
            raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'", 40, 10)
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
        self.hooks.plugmq_exchange_declared(vhost=self.name, exchange=exchange)
        return exchange

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
        if not name or name.startswith("amq."):
            raise AccessRefused(f"operation not permitted on exchange '{name}'", 40, 20)
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.binding_count:
            raise PreconditionFailed(f"exchange '{name}' in vhost '{self.name}' in use", 40, 20)
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        del self.exchanges[exchange.name]
        for other in list(self.exchanges.values()):  # a copy: auto-delete may cascade
            if other.has_exchange_destinations:
                self._bindings_gone(other, other.unbind_destination(exchange))
        self._bindings_gone(exchange, list(exchange.bindings()))
        if exchange.durable:
            self.journal.append(records.ExchangeDeleted(self.name, exchange.name))
        self.hooks.plugmq_exchange_deleted(vhost=self.name, exchange=exchange)

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
            return existing
        if existing is not None:
            self.check_exclusive_access(existing, owner, 50, 10)
            self._check_equivalent_queue(existing, durable, exclusive, auto_delete)
            return existing
        if name.startswith("amq.") and not server_named:
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'", 50, 10)
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
        self.hooks.plugmq_queue_declared(vhost=self.name, queue=queue)
        return queue

    def check_exclusive_access(self, queue: Queue, owner: object, class_id: int, method_id: int):
        """Raise 405 RESOURCE_LOCKED when ``queue`` is exclusive to another connection."""
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise ResourceLocked(
                f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost "
                f"'{self.name}'. It could be originally declared on another connection or the "
                "exclusive property value does not match that of the original declaration.",
                class_id,
                method_id,
            )

    def _check_equivalent_queue(
        self, existing: Queue, durable: bool, exclusive: bool, auto_delete: bool
    ) -> None:
        current_durable = existing.durable or (existing.exclusive_owner is not None and durable)
        for field, received, current in (
            ("durable", durable, current_durable),
            ("exclusive", exclusive, existing.exclusive_owner is not None),
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
            self._bindings_gone(exchange, exchange.unbind_destination(queue))
        if queue.durable:
            self.journal.append(records.QueueDeleted(self.name, queue.name))
        for consumer in list(queue.consumers):
            consumer.channel.cancel_by_broker(consumer)
        queue.drop_all()
        self.hooks.plugmq_queue_deleted(vhost=self.name, queue=queue)
        return count

    # -- bindings ----------------------------------------------------------------------------

    def _bindings_gone(self, source: Exchange, removed: list) -> None:
        """Tell plugins about bindings removed because their source or destination went.

        An auto-delete source left without bindings goes too (see :meth:`_maybe_auto_delete`).
        """
        for binding in removed:
            self.hooks.plugmq_binding_removed(
                vhost=self.name,
                source=source.name,
                destination=binding.destination.name,
                routing_key=binding.routing_key,
                arguments=binding.arguments,
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
        if not exchange_name:
            raise AccessRefused(
                "operation not permitted on the default exchange", class_id, method_id
            )
        exchange = self.get_exchange(exchange_name, class_id, method_id)
        if (
            exchange.bind(destination, routing_key, arguments)
            and exchange.durable
            and (destination.durable)
        ):
            self.journal.append(
                records.BindingAdded(
                    self.name,
                    exchange.name,
                    destination.name,
                    destination.kind,
                    routing_key,
                    dict(arguments),
                )
            )
        self.hooks.plugmq_binding_added(
            vhost=self.name,
            source=exchange.name,
            destination=destination.name,
            routing_key=routing_key,
            arguments=arguments,
        )

    def unbind(
        self,
        exchange_name: str,
        destination: Destination,
        routing_key: str,
        arguments: dict[str, Any],
        class_id: int,
        method_id: int,
    ) -> None:
        """Remove a binding; a missing binding is not an error (RabbitMQ 3.x)."""
        if not exchange_name:
            raise AccessRefused(
                "operation not permitted on the default exchange", class_id, method_id
            )
        exchange = self.get_exchange(exchange_name, class_id, method_id)
        if not exchange.unbind(destination, routing_key, arguments):
            return
        if exchange.durable and destination.durable:
            self.journal.append(
                records.BindingRemoved(
                    self.name,
                    exchange.name,
                    destination.name,
                    destination.kind,
                    routing_key,
                    dict(arguments),
                )
            )
        self.hooks.plugmq_binding_removed(
            vhost=self.name,
            source=exchange.name,
            destination=destination.name,
            routing_key=routing_key,
            arguments=arguments,
        )
        self._maybe_auto_delete(exchange)

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
            self.hooks.plugmq_queue_declared(vhost=self.name, queue=queue)

    def restore_binding(self, record: records.BindingAdded) -> None:
        """Recreate a durable binding; bindings to vanished entities are skipped."""
        source = self.exchanges.get(record.source)
        if record.destination_kind == "queue":
            destination: Destination | None = self.queues.get(record.destination)
        else:
            destination = self.exchanges.get(record.destination)
        if source is not None and destination is not None:
            source.bind(destination, record.routing_key, dict(record.arguments))

    # -- connections going away --------------------------------------------------------------

    def owner_closed(self, owner: object) -> None:
        """Delete the exclusive queues of a closed connection."""
        for queue in [q for q in self.queues.values() if q.exclusive_owner is owner]:
            self.delete_queue(queue)


def _fmt(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
