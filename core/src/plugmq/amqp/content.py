"""Reading the few content properties the broker acts on, without decoding the rest.

The broker keeps each message's content-header payload exactly as the publisher sent it and
forwards it untouched in basic.deliver. It only needs the body size, delivery mode, priority
and expiration, which :func:`peek_header` reads by skipping over the preceding fields. Full
decoding (headers exchange, dead-lettering) uses pamqp via :func:`decode_properties`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from pamqp import commands

from plugmq.amqp import constants as C
from plugmq.amqp.errors import FrameError, SyntaxError_, UnexpectedFrame

_HEAD = struct.Struct(">HHQH")
_U32 = struct.Struct(">I")

_CONTENT_TYPE = C.PROPERTY_CONTENT_TYPE
_CONTENT_ENCODING = C.PROPERTY_CONTENT_ENCODING
_HEADERS = C.PROPERTY_HEADERS
_DELIVERY_MODE = C.PROPERTY_DELIVERY_MODE
_PRIORITY = C.PROPERTY_PRIORITY
_CORRELATION_ID = C.PROPERTY_CORRELATION_ID
_REPLY_TO = C.PROPERTY_REPLY_TO
_EXPIRATION = C.PROPERTY_EXPIRATION

#: The ``user_id`` property's flag (1 << 4), tested on the low byte of the flag word (payload
#: byte 13): ``payload[USER_ID_BYTE] & USER_ID_BIT`` is the whole per-publish cost of checking
#: it, the property list is decoded only when it is set.
USER_ID_BYTE = 13
USER_ID_BIT = 0x10
#: The ``reply_to`` property's flag (1 << 9), on the high byte of the flag word (payload byte
#: 12): the per-publish cost of looking for direct reply-to.
REPLY_TO_BYTE = 12
REPLY_TO_BIT = 0x02


class HeaderSummary(NamedTuple):
    """What the broker needs from a content header."""

    body_size: int
    delivery_mode: int
    priority: int
    expiration: str | None


def peek_header(payload: bytes) -> HeaderSummary:
    """Read body size, delivery mode, priority and expiration from a content-header payload.

    Raises :class:`FrameError` (501) for a header shorter than its fixed fields,
    :class:`UnexpectedFrame` (505) for a header of another class than basic (RabbitMQ's
    command assembler: "expected content header for class 60, got one for class N instead")
    and :class:`SyntaxError_` (502) for malformed properties.
    """
    try:
        class_id, _weight, body_size, flags = _HEAD.unpack_from(payload)
    except struct.error as error:
        raise FrameError(f"content header too short: {error}") from error
    if class_id != C.BASIC:
        raise UnexpectedFrame(
            f"expected content header for class 60, got one for class {class_id} instead"
        )
    if not flags & (_DELIVERY_MODE | _PRIORITY | _EXPIRATION):
        return HeaderSummary(body_size, 1, 0, None)
    try:
        return _peek_properties(payload, body_size, flags)
    except (IndexError, struct.error, UnicodeDecodeError) as error:
        raise SyntaxError_(f"malformed content properties: {error}") from error


def _peek_properties(payload: bytes, body_size: int, flags: int) -> HeaderSummary:
    position = 14
    if flags & 1:  # a continuation flag word: no basic property lives there, skip it
        position += 2
    if flags & _CONTENT_TYPE:
        position += 1 + payload[position]
    if flags & _CONTENT_ENCODING:
        position += 1 + payload[position]
    if flags & _HEADERS:
        position += 4 + _U32.unpack_from(payload, position)[0]
    delivery_mode = priority = 0
    if flags & _DELIVERY_MODE:
        delivery_mode = payload[position]
        position += 1
    if flags & _PRIORITY:
        priority = payload[position]
        position += 1
    expiration = None
    if flags & _EXPIRATION:
        for flag in (_CORRELATION_ID, _REPLY_TO):
            if flags & flag:
                position += 1 + payload[position]
        length = payload[position]
        expiration = payload[position + 1 : position + 1 + length].decode()
    return HeaderSummary(body_size, delivery_mode or 1, priority, expiration)


def reply_to_span(payload: bytes) -> tuple[int, int]:
    """Where the ``reply_to`` value lies in a header payload whose ``reply_to`` flag is set.

    Returns ``(start, end)`` of the string's bytes (its length octet is at ``start - 1``), so
    the broker can compare or replace it without decoding the other properties. Raises
    :class:`SyntaxError_` (502) for malformed properties.
    """
    try:
        flags = _HEAD.unpack_from(payload)[3]
        position = 16 if flags & 1 else 14
        if flags & _CONTENT_TYPE:
            position += 1 + payload[position]
        if flags & _CONTENT_ENCODING:
            position += 1 + payload[position]
        if flags & _HEADERS:
            position += 4 + _U32.unpack_from(payload, position)[0]
        position += bool(flags & _DELIVERY_MODE) + bool(flags & _PRIORITY)
        if flags & _CORRELATION_ID:
            position += 1 + payload[position]
        start = position + 1
        end = start + payload[position]
    except (IndexError, struct.error) as error:
        raise SyntaxError_(f"malformed content properties: {error}") from error
    if end > len(payload):
        raise SyntaxError_("malformed content properties: reply_to runs past the header")
    return start, end


def decode_properties(payload: bytes) -> commands.Basic.Properties:
    """All properties of a content-header payload, via pamqp."""
    properties = commands.Basic.Properties()
    try:
        properties.unmarshal(_HEAD.unpack_from(payload)[3], payload[14:])
    except (struct.error, ValueError, IndexError, TypeError, RecursionError) as error:
        raise SyntaxError_(f"malformed content properties: {error}") from error
    return properties


def user_id_of(payload: bytes) -> str | None:
    """The ``user_id`` property of a content-header payload (None when absent)."""
    return decode_properties(payload).user_id


def encode_header(body_size: int, properties: commands.Basic.Properties) -> bytes:
    """A content-header payload for ``properties`` (used when the broker rewrites headers)."""
    return struct.pack(">HHQ", C.BASIC, 0, body_size) + properties.marshal()
