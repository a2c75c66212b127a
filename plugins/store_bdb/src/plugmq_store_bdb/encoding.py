"""Keys and values of the Berkeley DB store: how records become bytes and back.

Every variable-length string in a key is length-prefixed (2 bytes, big-endian) so that no name,
whatever bytes it holds, can run into the next field, and so that a key prefix selects exactly
one vhost, queue or binding source. Numbers are big-endian so the B-tree's byte order is their
numeric order.

* ``messages.db``: key ``lp(vhost) lp(queue) u64(message_id)``, value one flag byte
  (:data:`DELIVERED` or :data:`FRESH`), followed by the whole message (:func:`encode_message`)
  when its body is smaller than :data:`INLINE_LIMIT`. A cursor over one queue prefix yields
  that queue's messages oldest first.
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
  queues ``3``, bindings ``4``; ``\\x00`` keys hold store metadata (format version).
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import struct
from typing import Any

from plugmq.store.records import (
    BindingAdded,
    BindingRemoved,
    ConfigSet,
    ExchangeDeclared,
    MessageEnqueued,
    QueueDeclared,
    Record,
)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_MESSAGE_HEAD = struct.Struct(">HHI")

#: Flag byte of a message that has been delivered before (recovered with redelivered=True).
DELIVERED = b"\x01"
#: Flag byte of a message never delivered.
FRESH = b"\x00"

#: Messages with bodies smaller than this are stored inline in ``messages.db``.
INLINE_LIMIT = 4096

#: Key of the format marker in ``entities.db`` and the value this version writes.
FORMAT_KEY = b"\x00format"
FORMAT_VALUE = b"plugmq-store-bdb 2"
#: Earlier formats this version opens and upgrades in place. Format 1 kept every body in
#: ``bodies.db``; its values are valid format 2 values (a flag byte alone), so only the
#: marker changes.
UPGRADABLE_FORMATS = (b"plugmq-store-bdb 1",)

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


def encode_queued(flag: bytes, record: MessageEnqueued) -> bytes | None:
    """The ``messages.db`` value of a message kept inline, or None if its body is too big."""
    if len(record.body) >= INLINE_LIMIT:
        return None
    return flag + encode_message(record)


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
    """The ``entities.db`` key of a binding (same identity as the core's ``StoredState``)."""
    return BINDING + pack_strings(
        record.vhost,
        record.source,
        record.destination,
        record.destination_kind,
        record.routing_key,
        repr(sorted(record.arguments.items())),
    )


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
        _PlainUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as error:
        name = type(record).__name__
        raise ValueError(f"{name} holds a value the store cannot keep: {error}") from None
    return data


def decode_entity(value: bytes) -> Record:
    """The record stored by :func:`encode_entity`."""
    try:
        name, fields = _PlainUnpickler(io.BytesIO(value)).load()
        return _ENTITY_CLASSES[name](*fields)
    except Exception as error:
        raise EncodingError(f"malformed entity value: {error!r}") from error


class _PlainUnpickler(pickle.Unpickler):
    """Builds only plain data: containers, numbers, strings, bytes, decimals, date and time."""

    _ALLOWED = frozenset(
        {
            ("builtins", "set"),
            ("builtins", "frozenset"),
            ("builtins", "bytearray"),
            ("builtins", "complex"),
            ("decimal", "Decimal"),
            ("datetime", "datetime"),
            ("datetime", "date"),
            ("datetime", "time"),
            ("datetime", "timedelta"),
            ("datetime", "timezone"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        """Refuse every global that is not plain data."""
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not plain data")
        return super().find_class(module, name)
