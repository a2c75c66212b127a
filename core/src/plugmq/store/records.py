"""Journal records: the one ordered stream of durable changes.

Every durable change of broker state is one of these immutable records, appended to the
:class:`plugmq.journal.Journal` in the order it happened. A store persists them and, at start,
hands back the records that rebuild the state (not the history). An HA plugin ships the same
records to standbys. Records hold only plain data (str, int, bytes, dicts of AMQP field values)
so they can be pickled or encoded by any store or replication plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class ExchangeDeclared:
    """A durable exchange was declared (or is recovered)."""

    vhost: str
    name: str
    type: str
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExchangeDeleted:
    """A durable exchange was deleted, with its bindings."""

    vhost: str
    name: str


@dataclass(frozen=True, slots=True)
class QueueDeclared:
    """A durable queue was declared (or is recovered)."""

    vhost: str
    name: str
    auto_delete: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueDeleted:
    """A durable queue was deleted, with its bindings and messages."""

    vhost: str
    name: str


@dataclass(frozen=True, slots=True)
class QueuePurged:
    """The stored messages of a durable queue with an id above ``after_message_id`` were removed.

    With the default 0 every message goes. The broker purges a queue's paged-out tail this way
    (its ids are all above the ids held in memory) without reading it back first.
    """

    vhost: str
    name: str
    after_message_id: int = 0


@dataclass(frozen=True, slots=True)
class BindingAdded:
    """A binding between durable entities: ``source`` exchange to a queue or an exchange.

    ``destination_kind`` is ``"queue"`` or ``"exchange"``.
    """

    vhost: str
    source: str
    destination: str
    destination_kind: str
    routing_key: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BindingRemoved:
    """A durable binding was removed (same fields as :class:`BindingAdded`)."""

    vhost: str
    source: str
    destination: str
    destination_kind: str
    routing_key: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MessageEnqueued:
    """A persistent message was enqueued on a durable queue.

    ``message_id`` is unique within the broker and increases with time; the same message routed
    to several durable queues produces one record per queue with the same id, and a store may
    keep its body once. ``header`` is the content-header frame payload exactly as published
    (it carries the properties); ``exchange``/``routing_key`` are those of the publish.
    ``redelivered`` is true when the message had been delivered before (requeue on recovery).
    ``enqueued_at`` is the wall-clock time (``time.time()``) it entered the queue, so that its
    message TTL counts from then after a restart, as RabbitMQ's does; 0.0 means unknown (a
    record from a store that kept no time), and the TTL then counts from recovery.
    """

    vhost: str
    queue: str
    message_id: int
    exchange: str
    routing_key: str
    header: bytes
    body: bytes
    redelivered: bool = False
    enqueued_at: float = 0.0


@dataclass(frozen=True, slots=True)
class MessageRemoved:
    """A persistent message left a durable queue (acknowledged, expired, dead-lettered...)."""

    vhost: str
    queue: str
    message_id: int


@dataclass(frozen=True, slots=True)
class ConfigSet:
    """Durable configuration of the core or a plugin (users, vhosts, federation routes...).

    ``namespace`` names the owner (``"vhost"``, ``"user"``, ``"federation"``); ``value`` None
    deletes the key.
    """

    namespace: str
    key: str
    value: Any = None


Record = (
    ExchangeDeclared
    | ExchangeDeleted
    | QueueDeclared
    | QueueDeleted
    | QueuePurged
    | BindingAdded
    | BindingRemoved
    | MessageEnqueued
    | MessageRemoved
    | ConfigSet
)


# --- binding identity --------------------------------------------------------------------------


def freeze_value(value: Any) -> Hashable:
    """Return a hashable, type-tagged form of an AMQP field value.

    The type tag keeps ``1``, ``1.0`` and ``True`` apart, as RabbitMQ does when it compares
    binding arguments (its tables carry field types), and tables are sorted by key so the
    order a client sent them in does not matter.
    """
    if isinstance(value, dict):
        return ("table", freeze_arguments(value))
    if isinstance(value, list | tuple):
        return ("array", tuple(freeze_value(item) for item in value))
    if isinstance(value, bytearray):
        return ("bytes", bytes(value))
    return (type(value).__name__, value)


def freeze_arguments(arguments: dict[str, Any]) -> tuple[tuple[str, Hashable], ...]:
    """Return a hashable, order-independent form of an arguments table."""
    items = ((key, freeze_value(value)) for key, value in arguments.items())
    return tuple(sorted(items, key=_first))


def _first(pair: tuple[str, Hashable]) -> str:
    """Sort key for frozen tables: the field name (values may not be comparable)."""
    return pair[0]


BindingIdentity = tuple[str, str, str, str, str, tuple[tuple[str, Hashable], ...]]


def binding_identity(record: BindingAdded | BindingRemoved) -> BindingIdentity:
    """What makes two binding records the same binding (RabbitMQ's rule, as the exchanges use).

    Vhost, source, destination and its kind, routing key, and the arguments compared with
    their field types in any order. Every store keys bindings by this (or by an encoding of
    it), so a ``BindingRemoved`` removes exactly the binding the broker removed.
    """
    return (
        record.vhost,
        record.source,
        record.destination,
        record.destination_kind,
        record.routing_key,
        freeze_arguments(record.arguments),
    )


# --- dispatch ----------------------------------------------------------------------------------

#: The :class:`RecordHandler` method that handles each record type (the one place they are named).
HANDLER_METHODS: dict[type, str] = {
    ConfigSet: "on_config_set",
    ExchangeDeclared: "on_exchange_declared",
    ExchangeDeleted: "on_exchange_deleted",
    QueueDeclared: "on_queue_declared",
    QueueDeleted: "on_queue_deleted",
    QueuePurged: "on_queue_purged",
    BindingAdded: "on_binding_added",
    BindingRemoved: "on_binding_removed",
    MessageEnqueued: "on_message_enqueued",
    MessageRemoved: "on_message_removed",
}


class RecordHandler:
    """Base class of whatever folds records (a store's writer, the reference state, recovery).

    A subclass overrides the ``on_<record>`` methods it handles; the others call
    :meth:`unhandled`, which raises ``TypeError``. :meth:`apply` finds the method in a table
    built once per subclass, so dispatching a record costs one dict lookup and one call, as a
    hand-written table does (the store writer and recovery call it once per record).
    """

    _methods: ClassVar[dict[type, Callable[[Any, Any], None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Resolve every record type's method of this subclass once."""
        super().__init_subclass__(**kwargs)
        cls._methods = {kind: getattr(cls, name) for kind, name in HANDLER_METHODS.items()}

    def apply(self, record: Record) -> None:
        """Hand ``record`` to the method of its type."""
        method = self._methods.get(type(record))
        if method is None:
            raise TypeError(f"not a journal record: {record!r}")
        method(self, record)

    def unhandled(self, record: Record) -> None:
        """Called for record types the subclass does not handle: raises ``TypeError``."""
        raise TypeError(f"{type(self).__name__} does not handle {type(record).__name__}")

    def on_config_set(self, record: ConfigSet) -> None:
        """Handle a :class:`ConfigSet`."""
        self.unhandled(record)

    def on_exchange_declared(self, record: ExchangeDeclared) -> None:
        """Handle an :class:`ExchangeDeclared`."""
        self.unhandled(record)

    def on_exchange_deleted(self, record: ExchangeDeleted) -> None:
        """Handle an :class:`ExchangeDeleted`."""
        self.unhandled(record)

    def on_queue_declared(self, record: QueueDeclared) -> None:
        """Handle a :class:`QueueDeclared`."""
        self.unhandled(record)

    def on_queue_deleted(self, record: QueueDeleted) -> None:
        """Handle a :class:`QueueDeleted`."""
        self.unhandled(record)

    def on_queue_purged(self, record: QueuePurged) -> None:
        """Handle a :class:`QueuePurged`."""
        self.unhandled(record)

    def on_binding_added(self, record: BindingAdded) -> None:
        """Handle a :class:`BindingAdded`."""
        self.unhandled(record)

    def on_binding_removed(self, record: BindingRemoved) -> None:
        """Handle a :class:`BindingRemoved`."""
        self.unhandled(record)

    def on_message_enqueued(self, record: MessageEnqueued) -> None:
        """Handle a :class:`MessageEnqueued`."""
        self.unhandled(record)

    def on_message_removed(self, record: MessageRemoved) -> None:
        """Handle a :class:`MessageRemoved`."""
        self.unhandled(record)
