"""Folding journal records into the databases, inside one Berkeley DB transaction.

:class:`BatchWriter` gives the same result as the core's
:class:`plugmq.store.state.StoredState` for every record: entities are replaced by key,
``ExchangeDeleted``/``QueueDeleted`` drop their bindings, ``QueueDeleted``/``QueuePurged``
drop the queue's messages. A small message is stored inline with each queue's entry; a large
one's body is stored once per message id with a reference count of the queues holding it, and
dropping the last reference deletes the body.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from berkeleydb import db

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
    RecordHandler,
)
from plugmq_store_bdb import encoding
from plugmq_store_bdb.environment import Databases


class BatchWriter(RecordHandler):
    """Applies records to the databases within ``txn`` (the caller commits or aborts).

    :meth:`apply` (from :class:`RecordHandler`) folds one record into the databases.
    """

    def __init__(self, dbs: Databases, txn: db.DBTxn) -> None:
        self._dbs = dbs
        self._txn = txn

    # --- entities ------------------------------------------------------------------------------

    def _put_entity(self, record: ExchangeDeclared | QueueDeclared | BindingAdded) -> None:
        key = encoding.entity_key(record)
        self._dbs.entities.put(key, encoding.encode_entity(record), txn=self._txn)

    on_exchange_declared = on_queue_declared = on_binding_added = _put_entity

    def _delete_entity(self, key: bytes) -> None:
        _delete(self._dbs.entities, key, self._txn)

    def on_config_set(self, record: ConfigSet) -> None:
        if record.value is None:
            self._delete_entity(encoding.entity_key(record))
        else:
            self._put_entity(record)

    def on_binding_removed(self, record: BindingRemoved) -> None:
        self._delete_entity(encoding.binding_key(record))

    def on_exchange_deleted(self, record: ExchangeDeleted) -> None:
        self._delete_entity(encoding.EXCHANGE + encoding.pack_strings(record.vhost, record.name))
        self._drop_bindings(
            record.vhost,
            lambda b: (
                b.source == record.name
                or (b.destination == record.name and b.destination_kind == "exchange")
            ),
        )

    def on_queue_deleted(self, record: QueueDeleted) -> None:
        self._delete_entity(encoding.QUEUE + encoding.pack_strings(record.vhost, record.name))
        self._drop_bindings(
            record.vhost,
            lambda b: b.destination == record.name and b.destination_kind == "queue",
        )
        self._drop_messages(record.vhost, record.name)

    def on_queue_purged(self, record: QueuePurged) -> None:
        self._drop_messages(record.vhost, record.name, record.after_message_id)

    def _drop_bindings(self, vhost: str, matches: Callable[[BindingAdded], bool]) -> None:
        prefix = encoding.vhost_bindings_prefix(vhost)
        doomed = [
            key
            for key, value in _scan(self._dbs.entities, prefix, self._txn)
            if matches(encoding.decode_entity(value))  # type: ignore[arg-type]
        ]
        for key in doomed:
            self._delete_entity(key)

    # --- messages ------------------------------------------------------------------------------

    def on_message_enqueued(self, record: MessageEnqueued) -> None:
        key = encoding.message_key(record.vhost, record.queue, record.message_id)
        inline = encoding.encode_queued(record)
        if inline is not None:
            try:  # the common case: one B-tree insert
                self._dbs.messages.put(key, inline, txn=self._txn, flags=db.DB_NOOVERWRITE)
                return
            except db.DBKeyExistError:
                self._forget_entry(key, record.message_id)
                self._dbs.messages.put(key, inline, txn=self._txn)
                return
        id_key = encoding.pack_id(record.message_id)
        previous = self._dbs.messages.get(key, txn=self._txn)
        if previous is not None and not encoding.is_shared(previous):  # was inline: drop it
            previous = None
        self._dbs.messages.put(key, encoding.encode_queued_head(record), txn=self._txn)
        refs = encoding.unpack_count(self._dbs.refs.get(id_key, txn=self._txn))
        if previous is None:
            self._dbs.refs.put(id_key, encoding.pack_count(refs + 1), txn=self._txn)
        if refs == 0 or previous is not None:
            self._dbs.bodies.put(id_key, encoding.encode_message(record), txn=self._txn)

    def on_message_removed(self, record: MessageRemoved) -> None:
        key = encoding.message_key(record.vhost, record.queue, record.message_id)
        self._forget_entry(key, record.message_id)

    def _forget_entry(self, key: bytes, message_id: int) -> None:
        """Delete one queue's entry of a message, and its shared body if it was the last."""
        value = self._dbs.messages.get(key, txn=self._txn)
        if value is None:
            return
        self._dbs.messages.delete(key, txn=self._txn)
        if encoding.is_shared(value):
            self._unreference(message_id)

    def _drop_messages(self, vhost: str, queue: str, after_message_id: int = 0) -> None:
        """Drop the queue's messages with ids above ``after_message_id`` (all by default)."""
        prefix = encoding.queue_prefix(vhost, queue)
        cursor = self._dbs.messages.cursor(txn=self._txn)
        try:
            item = cursor.set_range(encoding.message_key(vhost, queue, after_message_id + 1))
            while item is not None and item[0].startswith(prefix):
                _, message_id = encoding.split_message_key(item[0])
                cursor.delete()
                if encoding.is_shared(item[1]):
                    self._unreference(message_id)
                item = cursor.next()
        finally:
            cursor.close()

    def _unreference(self, message_id: int) -> None:
        id_key = encoding.pack_id(message_id)
        refs = encoding.unpack_count(self._dbs.refs.get(id_key, txn=self._txn))
        if refs > 1:
            self._dbs.refs.put(id_key, encoding.pack_count(refs - 1), txn=self._txn)
            return
        _delete(self._dbs.refs, id_key, self._txn)
        _delete(self._dbs.bodies, id_key, self._txn)


def _delete(database: db.DB, key: bytes, txn: db.DBTxn) -> None:
    """Delete ``key`` if it is there (deleting a missing key is not an error here)."""
    with contextlib.suppress(db.DBNotFoundError):
        database.delete(key, txn=txn)


def _scan(database: db.DB, prefix: bytes, txn: db.DBTxn | None) -> Iterator[tuple[bytes, bytes]]:
    """Every ``(key, value)`` whose key starts with ``prefix``, in key order."""
    cursor = database.cursor(txn=txn)
    try:
        item = cursor.set_range(prefix)
        while item is not None and item[0].startswith(prefix):
            yield item
            item = cursor.next()
    finally:
        cursor.close()
