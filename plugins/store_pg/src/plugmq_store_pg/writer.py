"""Folding a journal batch into SQL statements, sent together in one transaction.

:class:`BatchWriter` turns each record into one or two statements with the same meaning as the
core's :class:`plugmq.store.state.StoredState`: entities are upserted by key,
``ExchangeDeleted``/``QueueDeleted`` drop their bindings, ``QueueDeleted``/``QueuePurged`` drop
the queue's messages, a re-enqueued message id replaces the row. :func:`execute` sends runs of
the same statement with ``executemany`` (psycopg pipelines them: one round trip per run), so a
batch of a thousand publishes costs a handful of round trips and one COMMIT.

Every statement is idempotent given the batch before it, so a batch whose COMMIT outcome is
unknown (the connection broke) may be applied again as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import psycopg

from plugmq.store.records import (
    BindingAdded,
    BindingRemoved,
    ConfigSet,
    ExchangeDeclared,
    ExchangeDeleted,
    MessageEnqueued,
    MessageRemoved,
    QueueDeclared,
    QueueDeleted,
    QueuePurged,
    Record,
    RecordHandler,
)
from plugmq_store_pg.codec import binding_key, dump, name

Statement = tuple[str, tuple[Any, ...]]

ENQUEUE = (
    "INSERT INTO plugmq_messages VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (vhost, queue, message_id) DO UPDATE SET delivered = EXCLUDED.delivered, "
    "enqueued_at = EXCLUDED.enqueued_at, exchange = EXCLUDED.exchange, "
    "routing_key = EXCLUDED.routing_key, header = EXCLUDED.header, body = EXCLUDED.body"
)
REMOVE = "DELETE FROM plugmq_messages WHERE vhost = %s AND queue = %s AND message_id = %s"
PURGE = "DELETE FROM plugmq_messages WHERE vhost = %s AND queue = %s AND message_id > %s"
SET_CONFIG = (
    "INSERT INTO plugmq_config VALUES (%s, %s, %s) "
    "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value"
)
DELETE_CONFIG = "DELETE FROM plugmq_config WHERE namespace = %s AND key = %s"
DECLARE_EXCHANGE = (
    "INSERT INTO plugmq_exchanges VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (vhost, name) DO UPDATE SET type = EXCLUDED.type, "
    "auto_delete = EXCLUDED.auto_delete, internal = EXCLUDED.internal, "
    "arguments = EXCLUDED.arguments"
)
DELETE_EXCHANGE = "DELETE FROM plugmq_exchanges WHERE vhost = %s AND name = %s"
UNBIND_EXCHANGE = (
    "DELETE FROM plugmq_bindings WHERE vhost = %s AND "
    "(source = %s OR (destination = %s AND destination_kind = 'exchange'))"
)
DECLARE_QUEUE = (
    "INSERT INTO plugmq_queues VALUES (%s, %s, %s, %s) ON CONFLICT (vhost, name) "
    "DO UPDATE SET auto_delete = EXCLUDED.auto_delete, arguments = EXCLUDED.arguments"
)
DELETE_QUEUE = "DELETE FROM plugmq_queues WHERE vhost = %s AND name = %s"
UNBIND_QUEUE = (
    "DELETE FROM plugmq_bindings WHERE vhost = %s AND destination = %s "
    "AND destination_kind = 'queue'"
)
BIND = (
    "INSERT INTO plugmq_bindings VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
    "(vhost, source, destination, destination_kind, routing_key, args_key) "
    "DO UPDATE SET arguments = EXCLUDED.arguments"
)
UNBIND = (
    "DELETE FROM plugmq_bindings WHERE vhost = %s AND source = %s AND destination = %s "
    "AND destination_kind = %s AND routing_key = %s AND args_key = %s"
)


class BatchWriter(RecordHandler):
    """Collects the statements of a batch, in record order (:attr:`statements`)."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []

    def on_message_enqueued(self, r: MessageEnqueued) -> None:
        self.statements.append(
            (
                ENQUEUE,
                (
                    name(r.vhost),
                    name(r.queue),
                    r.message_id,
                    r.redelivered,
                    r.enqueued_at,
                    name(r.exchange),
                    name(r.routing_key),
                    r.header,
                    r.body,
                ),
            )
        )

    def on_message_removed(self, r: MessageRemoved) -> None:
        self.statements.append((REMOVE, (name(r.vhost), name(r.queue), r.message_id)))

    def on_queue_purged(self, r: QueuePurged) -> None:
        self.statements.append((PURGE, (name(r.vhost), name(r.name), r.after_message_id)))

    def on_config_set(self, r: ConfigSet) -> None:
        key = (name(r.namespace), name(r.key))
        if r.value is None:
            self.statements.append((DELETE_CONFIG, key))
        else:
            self.statements.append((SET_CONFIG, (*key, dump(r.value))))

    def on_exchange_declared(self, r: ExchangeDeclared) -> None:
        values = (r.type, r.auto_delete, r.internal, dump(r.arguments))
        self.statements.append((DECLARE_EXCHANGE, (name(r.vhost), name(r.name), *values)))

    def on_exchange_deleted(self, r: ExchangeDeleted) -> None:
        vhost, exchange = name(r.vhost), name(r.name)
        self.statements.append((DELETE_EXCHANGE, (vhost, exchange)))
        self.statements.append((UNBIND_EXCHANGE, (vhost, exchange, exchange)))

    def on_queue_declared(self, r: QueueDeclared) -> None:
        values = (r.auto_delete, dump(r.arguments))
        self.statements.append((DECLARE_QUEUE, (name(r.vhost), name(r.name), *values)))

    def on_queue_deleted(self, r: QueueDeleted) -> None:
        vhost, queue = name(r.vhost), name(r.name)
        self.statements.append((DELETE_QUEUE, (vhost, queue)))
        self.statements.append((UNBIND_QUEUE, (vhost, queue)))
        self.statements.append((PURGE, (vhost, queue, 0)))

    def on_binding_added(self, r: BindingAdded) -> None:
        self.statements.append((BIND, (*_binding_columns(r), dump(r.arguments))))

    def on_binding_removed(self, r: BindingRemoved) -> None:
        self.statements.append((UNBIND, _binding_columns(r)))


def _binding_columns(r: BindingAdded | BindingRemoved) -> tuple[Any, ...]:
    return (
        name(r.vhost),
        name(r.source),
        name(r.destination),
        r.destination_kind,
        name(r.routing_key),
        binding_key(r),
    )


def statements_of(records: Sequence[Record]) -> list[Statement]:
    """The statements that apply ``records`` in order."""
    writer = BatchWriter()
    for record in records:
        writer.apply(record)
    return writer.statements


def execute(cursor: psycopg.Cursor, statements: list[Statement]) -> None:
    """Send the statements in order, runs of the same one as a pipelined ``executemany``."""
    for query, run in groupby(statements, key=itemgetter(0)):
        params = [p for _, p in run]
        if len(params) == 1:
            cursor.execute(query, params[0])  # type: ignore[arg-type]
        else:
            cursor.executemany(query, params)  # type: ignore[arg-type]
