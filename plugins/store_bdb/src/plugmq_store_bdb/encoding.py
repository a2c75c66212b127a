"""Keys and values of the Berkeley DB store: how records become bytes and back.

Every variable-length string in a key is length-prefixed (2 bytes, big-endian) so that no name,
whatever bytes it holds, can run into the next field, and so that a key prefix selects exactly
one vhost, queue or binding source. Numbers are big-endian so the B-tree's byte order is their
numeric order.

* ``messages.db``: key ``lp(vhost) lp(queue) u64(message_id)``, value one flag byte (bits
  :data:`DELIVERED_BIT`, :data:`TIMED_BIT`), the enqueue time as a big-endian double when
  ``TIMED_BIT`` is set (format 3 always sets it), then the whole message
  (:func:`encode_message`) when its body is smaller than :data:`INLINE_LIMIT`. A value that
  ends after the time (or after the flag, in older entries) keeps its message in ``bodies.db``.
  A cursor over one queue prefix yields that queue's messages oldest first.
* ``bodies.db``: key ``u64(message_id)``, value ``u16 u16 u32`` lengths then exchange,
  routing key, content header and body (see :func:`encode_message`); only for messages not
  kept inline, stored once however many queues hold them.
* ``refs.db``: key ``u64(message_id)``, value ``u32`` count of queues holding a message
  kept in ``bodies.db``.

Small messages are kept inline, one copy per queue, as RabbitMQ embeds messages below 4 KiB in
its queue index: storing and removing one then costs one B-tree update each instead of five
and four (reference count and shared body), and a fan-out of small messages costs a few
copies of little data.
* ``entities.db``: key ``kind byte + lp(fields...)``, value a pickled tuple of the record's
  fields, read back by a restricted unpickler that only builds plain data
  (:func:`decode_entity`). Kinds sort in recovery order: config ``1``, exchanges ``2``,
  queues ``3``, bindings ``4``; ``\\x00`` keys hold store metadata (format version, and
  :data:`CLEAN_KEY` while the store is closed cleanly).
"""

from __future__ import annotations

import dataclasses
import pickle
import struct
from collections.abc import Callable

from plugmq.store.plain import load_plain
from plugmq.store.records import (
    BindingAdded,
    BindingRemoved,
    ConfigSet,
    ExchangeDeclared,
    MessageEnqueued,
    QueueDeclared,
    Record,
    binding_identity,
)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TIME = struct.Struct(">d")
_MESSAGE_HEAD = struct.Struct(">HHI")
#: Flag byte and enqueue time: the ``messages.db`` value of a message kept in ``bodies.db``.
QUEUED_HEAD = struct.Struct(">Bd")
#: Flag byte, enqueue time and :data:`_MESSAGE_HEAD`: the start of an inline value.
_INLINE_HEAD = struct.Struct(">BdHHI")

# Bound once: decode_queued runs once per message in recovery.
_QUEUED_SIZE = QUEUED_HEAD.size
_INLINE_SIZE = _INLINE_HEAD.size
_unpack_inline = _INLINE_HEAD.unpack_from

#: Flag bit of a message that has been delivered before (recovered with redelivered=True).
DELIVERED_BIT = 0x01
#: Flag bit of an entry that carries its enqueue time (every entry written by format 3).
TIMED_BIT = 0x02

#: Messages with bodies smaller than this are stored inline in ``messages.db``.
INLINE_LIMIT = 4096

#: Key of the format marker in ``entities.db`` and the value this version writes.
FORMAT_KEY = b"\x00format"
FORMAT_VALUE = b"plugmq-store-bdb 3"
#: Earlier formats this version opens and upgrades in place (see :mod:`.upgrade`). Format 1
#: kept every body in ``bodies.db``, format 2 small ones inline; neither stored the enqueue
#: time, and their flag bytes (0 or 1) say so, so their message entries stay as they are.
#: Both keyed bindings by another form of their arguments: bindings are re-keyed.
UPGRADABLE_FORMATS = (b"plugmq-store-bdb 1", b"plugmq-store-bdb 2")
#: Metadata key present only while the store is closed after a clean ``close()``: its value is
#: a ``u64`` message id; every stored message with a lower id counts as delivered (the
#: messages that were stored when an earlier unclean stop was recovered; 0 for none).
CLEAN_KEY = b"\x00clean"

CONFIG = b"1"
EXCHANGE = b"2"
QUEUE = b"3"
BINDING = b"4"
#: First key of the recoverable entities (everything after the metadata).
FIRST_ENTITY = CONFIG

_ENTITY_CLASSES: dict[str, type] = {
    cls.__name__: cls for cls in (ConfigSet, ExchangeDeclared, QueueDeclared, BindingAdded)
}


class EncodingError(ValueError):
    """Bytes read from the database are not what this store writes."""


# --- strings and numbers -----------------------------------------------------------------------


def pack_strings(*parts: str) -> bytes:
    """Length-prefixed UTF-8 of each part, concatenated."""
    out = bytearray()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        if len(data) > 0xFFFF:
            raise ValueError(f"name too long for the store: {len(data)} bytes")
        out += _U16.pack(len(data))
        out += data
    return bytes(out)


def unpack_strings(data: bytes, count: int) -> list[str]:
    """Read ``count`` length-prefixed strings from the start of ``data``."""
    parts: list[str] = []
    offset = 0
    try:
        for _ in range(count):
            (length,) = _U16.unpack_from(data, offset)
            offset += 2
            if offset + length > len(data):
                raise EncodingError("truncated string in key")
            parts.append(data[offset : offset + length].decode("utf-8", "surrogatepass"))
            offset += length
    except (struct.error, UnicodeDecodeError) as error:
        raise EncodingError(f"malformed key: {error}") from error
    return parts


def pack_id(message_id: int) -> bytes:
    """A message id as 8 big-endian bytes (the key of ``bodies.db`` and ``refs.db``)."""
    return _U64.pack(message_id)


def pack_count(count: int) -> bytes:
    """A reference count as 4 big-endian bytes."""
    return _U32.pack(count)


def unpack_count(data: bytes | None) -> int:
    """A reference count read from ``refs.db`` (0 when absent)."""
    return 0 if data is None else _U32.unpack(data)[0]


# --- messages ----------------------------------------------------------------------------------


def queue_prefix(vhost: str, queue: str) -> bytes:
    """The key prefix shared by every message of one queue in ``messages.db``."""
    return pack_strings(vhost, queue)


def message_key(vhost: str, queue: str, message_id: int) -> bytes:
    """The ``messages.db`` key of one message on one queue."""
    return queue_prefix(vhost, queue) + _U64.pack(message_id)


def split_message_key(key: bytes) -> tuple[bytes, int]:
    """``(queue_prefix, message_id)`` of a ``messages.db`` key."""
    if len(key) < 12:
        raise EncodingError(f"malformed message key {key!r}")
    return key[:-8], _U64.unpack_from(key, len(key) - 8)[0]


def decode_queue_prefix(prefix: bytes) -> tuple[str, str]:
    """``(vhost, queue)`` of a queue prefix."""
    vhost, queue = unpack_strings(prefix, 2)
    return vhost, queue


def encode_message(record: MessageEnqueued) -> bytes:
    """The ``bodies.db`` value of a message: what every queue holding it shares."""
    exchange = record.exchange.encode()
    routing_key = record.routing_key.encode()
    head = _MESSAGE_HEAD.pack(len(exchange), len(routing_key), len(record.header))
    return b"".join((head, exchange, routing_key, record.header, record.body))


def encode_queued(record: MessageEnqueued) -> bytes | None:
    """The ``messages.db`` value of a message kept inline, or None if its body is too big."""
    body = record.body
    if len(body) >= INLINE_LIMIT:
        return None
    exchange = record.exchange.encode()
    routing_key = record.routing_key.encode()
    header = record.header
    flags = TIMED_BIT | DELIVERED_BIT if record.redelivered else TIMED_BIT
    head = _INLINE_HEAD.pack(
        flags, record.enqueued_at, len(exchange), len(routing_key), len(header)
    )
    return b"".join((head, exchange, routing_key, header, body))


def encode_queued_head(record: MessageEnqueued) -> bytes:
    """The ``messages.db`` value of a message whose body is kept in ``bodies.db``."""
    flags = TIMED_BIT | DELIVERED_BIT if record.redelivered else TIMED_BIT
    return QUEUED_HEAD.pack(flags, record.enqueued_at)


def split_queued(value: bytes) -> tuple[int, float, int]:
    """``(flags, enqueued_at, offset)`` of a ``messages.db`` value.

    The message starts at ``offset``; when ``offset == len(value)`` it is in ``bodies.db``.
    Entries of formats 1 and 2 carry no time: ``enqueued_at`` is then 0.0 (unknown).
    """
    flags = value[0]
    if flags & TIMED_BIT:
        return flags, _TIME.unpack_from(value, 1)[0], QUEUED_HEAD.size
    return flags, 0.0, 1


def is_shared(value: bytes) -> bool:
    """True when a ``messages.db`` value keeps its message in ``bodies.db``."""
    return len(value) == (QUEUED_HEAD.size if value[0] & TIMED_BIT else 1)


def mark_value_delivered(value: bytes) -> bytes | None:
    """``value`` with :data:`DELIVERED_BIT` set, or None if it is set already."""
    flags = value[0]
    if flags & DELIVERED_BIT:
        return None
    return bytes((flags | DELIVERED_BIT,)) + value[1:]


def pack_horizon(message_id: int) -> bytes:
    """The :data:`CLEAN_KEY` value."""
    return _U64.pack(message_id)


def unpack_horizon(value: bytes) -> int:
    """The message id stored under :data:`CLEAN_KEY`."""
    if len(value) != 8:
        raise EncodingError(f"malformed clean-shutdown marker {value!r}")
    return _U64.unpack(value)[0]


def decode_queued(
    value: bytes, id_bytes: bytes, get_body: Callable[[bytes], bytes | None]
) -> tuple[int, float, str, str, bytes, bytes]:
    """``(flags, enqueued_at, exchange, routing_key, header, body)`` of a ``messages.db`` value.

    ``get_body`` reads ``bodies.db`` (by ``id_bytes``, the key's id) for a message not kept
    inline. A format 3 inline value (the common case) is decoded with one ``struct`` call:
    recovery runs this once per stored message.
    """
    if value[0] & TIMED_BIT and len(value) > _QUEUED_SIZE:
        try:
            flags, enqueued_at, ex_len, rk_len, header_len = _unpack_inline(value)
        except struct.error as error:
            raise EncodingError(f"malformed message value: {error}") from error
        rk_start = _INLINE_SIZE + ex_len
        header_start = rk_start + rk_len
        body_start = header_start + header_len
        if body_start > len(value):
            raise EncodingError("truncated message value")
        return (
            flags,
            enqueued_at,
            value[_INLINE_SIZE:rk_start].decode(),
            value[rk_start:header_start].decode(),
            value[header_start:body_start],
            value[body_start:],
        )
    flags, enqueued_at, offset = split_queued(value)
    if len(value) > offset:
        return (flags, enqueued_at, *decode_message(value, offset))
    shared = get_body(id_bytes)
    if shared is None:
        raise EncodingError(f"message {_U64.unpack(id_bytes)[0]} has no body")
    return (flags, enqueued_at, *decode_message(shared))


def decode_message(value: bytes, offset: int = 0) -> tuple[str, str, bytes, bytes]:
    """``(exchange, routing_key, header, body)`` of a message encoded at ``value[offset:]``."""
    try:
        ex_len, rk_len, header_len = _MESSAGE_HEAD.unpack_from(value, offset)
    except struct.error as error:
        raise EncodingError(f"malformed message value: {error}") from error
    start = offset + _MESSAGE_HEAD.size
    rk_start = start + ex_len
    header_start = rk_start + rk_len
    body_start = header_start + header_len
    if body_start > len(value):
        raise EncodingError("truncated message value")
    return (
        value[start:rk_start].decode(),
        value[rk_start:header_start].decode(),
        value[header_start:body_start],
        value[body_start:],
    )


# --- entities ----------------------------------------------------------------------------------


def binding_key(record: BindingAdded | BindingRemoved) -> bytes:
    """The ``entities.db`` key of a binding: :func:`plugmq.store.records.binding_identity`.

    The frozen arguments are kept as their ``repr``: type-tagged, sorted by field name at every
    level, and made only of str, bytes, numbers, decimals and datetimes, whose reprs are stable.
    """
    vhost, source, destination, kind, routing_key, arguments = binding_identity(record)
    return BINDING + pack_strings(vhost, source, destination, kind, routing_key, repr(arguments))


def vhost_bindings_prefix(vhost: str) -> bytes:
    """The key prefix of every binding in ``vhost``."""
    return BINDING + pack_strings(vhost)


def entity_key(record: ConfigSet | ExchangeDeclared | QueueDeclared | BindingAdded) -> bytes:
    """The ``entities.db`` key of a config entry, exchange, queue or binding."""
    if isinstance(record, ConfigSet):
        return CONFIG + pack_strings(record.namespace, record.key)
    if isinstance(record, ExchangeDeclared):
        return EXCHANGE + pack_strings(record.vhost, record.name)
    if isinstance(record, QueueDeclared):
        return QUEUE + pack_strings(record.vhost, record.name)
    return binding_key(record)


def encode_entity(record: Record) -> bytes:
    """Pickle a record's fields; raises ``ValueError`` if they are not plain data."""
    fields = tuple(getattr(record, f.name) for f in dataclasses.fields(record))
    data = pickle.dumps((type(record).__name__, fields), protocol=5)
    try:
        load_plain(data)
    except pickle.UnpicklingError as error:
        name = type(record).__name__
        raise ValueError(f"{name} holds a value the store cannot keep: {error}") from None
    return data


def decode_entity(value: bytes) -> Record:
    """The record stored by :func:`encode_entity`."""
    try:
        name, fields = load_plain(value)
        return _ENTITY_CLASSES[name](*fields)
    except Exception as error:
        raise EncodingError(f"malformed entity value: {error!r}") from error
