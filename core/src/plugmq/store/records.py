"""Journal records: the one ordered stream of durable changes.

Every durable change of broker state is one of these immutable records, appended to the
:class:`plugmq.journal.Journal` in the order it happened. A store persists them and, at start,
hands back the records that rebuild the state (not the history). An HA plugin ships the same
records to standbys. Records hold only plain data (str, int, bytes, dicts of AMQP field values)
so they can be pickled or encoded by any store or replication plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    """

    vhost: str
    queue: str
    message_id: int
    exchange: str
    routing_key: str
    header: bytes
    body: bytes
    redelivered: bool = False


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
