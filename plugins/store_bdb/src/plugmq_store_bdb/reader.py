"""Recovery: reading the databases back as the records that rebuild the broker's state.

Order (the store contract): config, exchanges, queues, bindings (one pass over
``entities.db``, whose kind bytes sort in that order), then every queue's messages oldest
first (one cursor pass over ``messages.db``, whose keys sort by queue then message id). Queues
come in key order, not declaration order; the contract only orders messages within a queue.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Iterator

from plugmq.store.records import MessageEnqueued, Record
from plugmq_store_bdb import encoding
from plugmq_store_bdb.encoding import DELIVERED_BIT
from plugmq_store_bdb.environment import Databases

#: Messages between two ``progress(done, total)`` calls.
PROGRESS_EVERY = 10_000

_U64 = struct.Struct(">Q")


def entity_records(dbs: Databases) -> Iterator[Record]:
    """Config, exchange, queue and binding records, in recovery order."""
    cursor = dbs.entities.cursor()
    try:
        item = cursor.set_range(encoding.FIRST_ENTITY)
        while item is not None:
            yield encoding.decode_entity(item[1])
            item = cursor.next()
    finally:
        cursor.close()


def count_messages(dbs: Databases) -> int:
    """How many (queue, message) pairs are stored (walks the B-tree pages, in C)."""
    return int(dbs.messages.stat()["nkeys"])


def message_records(
    dbs: Databases, total: int, progress: Callable[[int, int], None], redelivered_below: float
) -> Generator[MessageEnqueued, None, int]:
    """Every stored message, queue by queue, oldest first; reports progress as it goes.

    Messages with ids below ``redelivered_below`` are yielded as redelivered whatever their
    flag (they were stored when the broker stopped uncleanly). Returns the highest id seen
    (-1 when there is none).
    """
    get_body = dbs.bodies.get
    unpack_id = _U64.unpack_from
    decode = encoding.decode_queued
    delivered_bit = DELIVERED_BIT
    current_prefix = b""
    vhost = queue = ""
    done = 0
    highest = message_id = -1
    cursor = dbs.messages.cursor()
    try:
        item = cursor.first()
        while item is not None:
            key, value = item
            prefix = key[:-8]
            if prefix != current_prefix:
                # A queue's last message has its highest id: compare once per queue.
                highest = max(highest, message_id)
                vhost, queue = encoding.decode_queue_prefix(prefix)
                current_prefix = prefix
            id_bytes = key[-8:]
            message_id = unpack_id(id_bytes)[0]
            flags, enqueued_at, exchange, routing_key, header, body = decode(
                value, id_bytes, get_body
            )
            yield MessageEnqueued(
                vhost,
                queue,
                message_id,
                exchange,
                routing_key,
                header,
                body,
                flags & delivered_bit != 0 or message_id < redelivered_below,
                enqueued_at,
            )
            done += 1
            if done % PROGRESS_EVERY == 0:
                progress(done, total)
            item = cursor.next()
    finally:
        cursor.close()
    progress(done, max(done, total))
    return max(highest, message_id)


def queue_messages(
    dbs: Databases,
    vhost: str,
    queue: str,
    after_message_id: int,
    limit: int,
    redelivered_below: float,
) -> list[MessageEnqueued]:
    """Up to ``limit`` messages of one queue with ids above ``after_message_id`` (paging).

    ``redelivered_below`` as for :func:`message_records`.
    """
    prefix = encoding.queue_prefix(vhost, queue)
    found: list[MessageEnqueued] = []
    cursor = dbs.messages.cursor()
    try:
        item = cursor.set_range(encoding.message_key(vhost, queue, after_message_id + 1))
        while item is not None and item[0].startswith(prefix) and len(found) < limit:
            id_bytes, value = item[0][-8:], item[1]
            message_id = _U64.unpack(id_bytes)[0]
            flags, enqueued_at, exchange, routing_key, header, body = encoding.decode_queued(
                value, id_bytes, dbs.bodies.get
            )
            found.append(
                MessageEnqueued(
                    vhost,
                    queue,
                    message_id,
                    exchange,
                    routing_key,
                    header,
                    body,
                    bool(flags & DELIVERED_BIT) or message_id < redelivered_below,
                    enqueued_at,
                )
            )
            item = cursor.next()
    finally:
        cursor.close()
    return found
