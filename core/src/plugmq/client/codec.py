"""The client's hot-path codec: struct-based, sans-IO, like :mod:`plugmq.amqp.methods`.

The broker's codec decodes what *clients* send fast (basic.publish, client acks); a client
needs the other direction: encode basic.publish with its content, decode basic.deliver,
basic.get-ok, basic.return and the broker's confirms (basic.ack / basic.nack). pamqp would cost
tens of microseconds per message for these; cold methods still go through pamqp.

Content is returned as a list of parts (bytes or memoryview slices of the body) so a large body
is copied once, when the connection's writer joins everything it sends in one go.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Mapping
from typing import Any

from pamqp import commands, encode

from plugmq.amqp import constants as C
from plugmq.amqp import methods

_FRAME_HEADER = struct.Struct(">BHI")
_INDEX = struct.Struct(">I")
_PUBLISH_HEAD = struct.Struct(">BHIIH")  # frame type, channel, size, method index, reserved
_HEADER_HEAD = struct.Struct(">HHQ")
_TAG_BITS = struct.Struct(">QB")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_END = b"\xce"

BASIC_RECOVER_OK = (C.BASIC << 16) | 111

# --------------------------------------------------------------------------------------------
# Encoding: basic.publish and its content
# --------------------------------------------------------------------------------------------

_ROUTE_CACHE: dict[tuple[str, str], bytes] = {}
_ROUTE_CACHE_SIZE = 4096


def _route(exchange: str, routing_key: str) -> bytes:
    """Exchange and routing key as two short strings, cached: publishers repeat them."""
    key = (exchange, routing_key)
    encoded = _ROUTE_CACHE.get(key)
    if encoded is None:
        if len(_ROUTE_CACHE) >= _ROUTE_CACHE_SIZE:
            _ROUTE_CACHE.clear()
        encoded = methods.shortstr(exchange) + methods.shortstr(routing_key)
        _ROUTE_CACHE[key] = encoded
    return encoded


def encode_publish(
    channel: int,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes | memoryview]:
    """The frames of one published message: basic.publish, content header, body frame(s).

    ``properties`` is the encoded property flags and list (see :func:`encode_properties`).
    """
    route = _route(exchange, routing_key)
    size = len(body)
    parts: list[bytes | memoryview] = [
        _PUBLISH_HEAD.pack(C.FRAME_METHOD, channel, 7 + len(route), methods.BASIC_PUBLISH, 0),
        route,
        b"\x01\xce" if mandatory else b"\x00\xce",
        _FRAME_HEADER.pack(C.FRAME_HEADER, channel, 12 + len(properties)),
        _HEADER_HEAD.pack(C.BASIC, 0, size),
        properties,
        _END,
    ]
    chunk = frame_max - C.FRAME_OVERHEAD
    if size <= chunk:
        if size:
            parts += (_FRAME_HEADER.pack(C.FRAME_BODY, channel, size), body, _END)
        return parts
    view = memoryview(body)
    for start in range(0, size, chunk):
        piece = view[start : start + chunk]
        parts += (_FRAME_HEADER.pack(C.FRAME_BODY, channel, len(piece)), piece, _END)
    return parts


def _method_frame(channel: int, index: int, arguments: bytes) -> bytes:
    return b"".join(
        (
            _FRAME_HEADER.pack(C.FRAME_METHOD, channel, 4 + len(arguments)),
            _INDEX.pack(index),
            arguments,
            _END,
        )
    )


def encode_ack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """A basic.ack frame acknowledging a delivery."""
    return methods.encode_ack(channel, delivery_tag, multiple)


def encode_nack(channel: int, delivery_tag: int, multiple: bool, requeue: bool) -> bytes:
    """A basic.nack frame (RabbitMQ extension) rejecting one or several deliveries."""
    bits = (1 if multiple else 0) | (2 if requeue else 0)
    return _method_frame(channel, methods.BASIC_NACK, _TAG_BITS.pack(delivery_tag, bits))


def encode_reject(channel: int, delivery_tag: int, requeue: bool) -> bytes:
    """A basic.reject frame rejecting one delivery."""
    return _method_frame(channel, methods.BASIC_REJECT, _TAG_BITS.pack(delivery_tag, requeue))


# --------------------------------------------------------------------------------------------
# Encoding: content properties
# --------------------------------------------------------------------------------------------

_SHORTSTR = "s"
_OCTET = "o"
_TABLE = "t"
_TIMESTAMP = "T"

#: Basic properties in wire order: (name, flag bit, kind). Names are pamqp's.
_PROPERTY_FIELDS = (
    ("content_type", 1 << 15, _SHORTSTR),
    ("content_encoding", 1 << 14, _SHORTSTR),
    ("headers", 1 << 13, _TABLE),
    ("delivery_mode", 1 << 12, _OCTET),
    ("priority", 1 << 11, _OCTET),
    ("correlation_id", 1 << 10, _SHORTSTR),
    ("reply_to", 1 << 9, _SHORTSTR),
    ("expiration", 1 << 8, _SHORTSTR),
    ("message_id", 1 << 7, _SHORTSTR),
    ("timestamp", 1 << 6, _TIMESTAMP),
    ("message_type", 1 << 5, _SHORTSTR),
    ("user_id", 1 << 4, _SHORTSTR),
    ("app_id", 1 << 3, _SHORTSTR),
    ("cluster_id", 1 << 2, _SHORTSTR),
)
_PROPERTY_NAMES = frozenset(name for name, _, _ in _PROPERTY_FIELDS) | {"type"}

NO_PROPERTIES = b"\x00\x00"


def encode_properties(
    properties: Mapping[str, Any] | commands.Basic.Properties | bytes | None,
) -> bytes:
    """Property flags and property list for a content header.

    ``properties`` is None, a pamqp ``Basic.Properties``, or a mapping using pamqp's names
    (``content_type``, ``delivery_mode``, ``headers``, ``message_type`` or ``type`` ...); None
    values are left out. ``timestamp`` may be a datetime or seconds since the epoch.
    ``bytes`` are taken as already encoded flags and list (a received header's payload from
    offset 12: forwarders pass a message's properties through without decoding them).
    Raises :class:`ValueError` for an unknown property name.
    """
    if properties is None:
        return NO_PROPERTIES
    if isinstance(properties, bytes):
        return properties
    if isinstance(properties, commands.Basic.Properties):
        return properties.marshal()
    unknown = properties.keys() - _PROPERTY_NAMES
    if unknown:
        raise ValueError(f"unknown message properties: {sorted(unknown)}")
    if "type" in properties:
        properties = {"message_type": properties["type"]} | {
            k: v for k, v in properties.items() if k != "type"
        }
    flags = 0
    parts = [b""]
    for name, bit, kind in _PROPERTY_FIELDS:
        value = properties.get(name)
        if value is not None:
            flags |= bit
            parts.append(_encode_property(kind, value))
    parts[0] = _U16.pack(flags)
    return b"".join(parts)


def _encode_property(kind: str, value: Any) -> bytes:
    if kind == _SHORTSTR:
        return methods.shortstr(value)
    if kind == _OCTET:
        return bytes((value,))
    if kind == _TABLE:
        return encode.field_table(value)
    if isinstance(value, datetime.datetime):
        return encode.timestamp(value)
    return _U64.pack(int(value))


# --------------------------------------------------------------------------------------------
# Decoding: deliveries and confirms
# --------------------------------------------------------------------------------------------


def _shortstr_at(payload: bytes, position: int) -> tuple[str, int]:
    length = payload[position]
    end = position + 1 + length
    return payload[position + 1 : end].decode(), end


def decode_deliver(payload: bytes) -> tuple[str, int, bool, str, str]:
    """basic.deliver -> (consumer tag, delivery tag, redelivered, exchange, routing key)."""
    consumer_tag, position = _shortstr_at(payload, 4)
    delivery_tag, bits = _TAG_BITS.unpack_from(payload, position)
    exchange, position = _shortstr_at(payload, position + 9)
    routing_key, _ = _shortstr_at(payload, position)
    return consumer_tag, delivery_tag, bool(bits & 1), exchange, routing_key


def decode_get_ok(payload: bytes) -> tuple[int, bool, str, str, int]:
    """basic.get-ok -> (delivery tag, redelivered, exchange, routing key, message count)."""
    delivery_tag, bits = _TAG_BITS.unpack_from(payload, 4)
    exchange, position = _shortstr_at(payload, 13)
    routing_key, position = _shortstr_at(payload, position)
    return (
        delivery_tag,
        bool(bits & 1),
        exchange,
        routing_key,
        _U32.unpack_from(payload, position)[0],
    )


def decode_return(payload: bytes) -> tuple[int, str, str, str]:
    """basic.return -> (reply code, reply text, exchange, routing key)."""
    reply_code = _U16.unpack_from(payload, 4)[0]
    reply_text, position = _shortstr_at(payload, 6)
    exchange, position = _shortstr_at(payload, position)
    routing_key, _ = _shortstr_at(payload, position)
    return reply_code, reply_text, exchange, routing_key


def decode_confirm(payload: bytes) -> tuple[int, bool]:
    """A broker's basic.ack or basic.nack -> (delivery tag, multiple); requeue is meaningless."""
    delivery_tag, bits = _TAG_BITS.unpack_from(payload, 4)
    return delivery_tag, bool(bits & 1)


def body_size(header_payload: bytes) -> int:
    """The body size announced by a content-header payload."""
    return _U64.unpack_from(header_payload, 4)[0]


def method_index(payload: bytes) -> int:
    """The method index (class id << 16 | method id) at the start of a method payload."""
    return _INDEX.unpack_from(payload)[0]
