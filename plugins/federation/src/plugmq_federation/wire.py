"""The path header on the wire: read it and rewrite it without decoding the properties.

A forwarded message carries ``x-plugmq-path``, a long string of the broker ids it has been
in, comma-separated, origin first (RabbitMQ's ``x-received-from`` plays the same part). Every
hop reads it (and the ``message_id``, for the duplicate window) and writes it one id longer.

Decoding and re-encoding the whole property list with pamqp costs ~20 µs a message; this
module reads the content-header payload in place and splices a new headers table into it,
which keeps every other property byte as the publisher wrote it. A message whose headers
table has no path (the first hop, by far the most common) gets the entry appended to the
table's bytes, with no table decoding at all.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from plugmq.amqp import constants as C

PATH_HEADER = b"x-plugmq-path"

_FLAGS_AT = 12  # class id (2), weight (2), body size (8), then the property flags
_CONTENT_TYPE = C.PROPERTY_CONTENT_TYPE
_CONTENT_ENCODING = C.PROPERTY_CONTENT_ENCODING
_HEADERS = C.PROPERTY_HEADERS
_DELIVERY_MODE = C.PROPERTY_DELIVERY_MODE
_PRIORITY = C.PROPERTY_PRIORITY
_CORRELATION_ID = C.PROPERTY_CORRELATION_ID
_REPLY_TO = C.PROPERTY_REPLY_TO
_EXPIRATION = C.PROPERTY_EXPIRATION
_MESSAGE_ID = C.PROPERTY_MESSAGE_ID

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

#: Size of a field value by its AMQP table type tag (those of fixed size).
_FIXED = {
    ord("t"): 1,
    ord("b"): 1,
    ord("B"): 1,
    ord("s"): 2,
    ord("u"): 2,
    ord("I"): 4,
    ord("i"): 4,
    ord("f"): 4,
    ord("l"): 8,
    ord("L"): 8,
    ord("d"): 8,
    ord("T"): 8,
    ord("D"): 5,
    ord("V"): 0,
}
#: Types whose value is a 32-bit length and that many bytes.
_SIZED = {ord("S"), ord("x"), ord("A"), ord("F")}


class WireError(ValueError):
    """The content header is not what AMQP 0-9-1 says it should be."""


class Scan(NamedTuple):
    """What one hop needs from a content header."""

    #: The path header's value (``b"id1,id2"``), or None when the message has none.
    path: bytes | None
    #: The ``message_id`` property, or None.
    message_id: bytes | None
    #: Where the headers table starts (its length prefix) and ends; equal when absent.
    table_start: int
    table_end: int
    #: ``delivery_mode`` 2 (only these are worth journaling the key of: see .durable_window).
    persistent: bool = False


def scan(header: bytes) -> Scan:
    """Find the path header and the message id in a content-header payload."""
    flags = _U16.unpack_from(header, _FLAGS_AT)[0]
    at = _FLAGS_AT + 2
    if flags & 1:
        raise WireError("property flags continuation is not supported")
    at = _skip_shortstr(header, at, flags & _CONTENT_TYPE)
    at = _skip_shortstr(header, at, flags & _CONTENT_ENCODING)
    table_start = at
    path = None
    if flags & _HEADERS:
        size = _U32.unpack_from(header, at)[0]
        path = _find_path(header, at + 4, at + 4 + size)
        at += 4 + size
    table_end = at
    persistent = bool(flags & _DELIVERY_MODE) and header[at] == 2
    at += bool(flags & _DELIVERY_MODE) + bool(flags & _PRIORITY)
    at = _skip_shortstr(header, at, flags & _CORRELATION_ID)
    at = _skip_shortstr(header, at, flags & _REPLY_TO)
    at = _skip_shortstr(header, at, flags & _EXPIRATION)
    message_id = None
    if flags & _MESSAGE_ID:
        length = header[at]
        message_id = header[at + 1 : at + 1 + length]
    return Scan(path, message_id, table_start, table_end, persistent)


def with_path(header: bytes, found: Scan, path: bytes) -> bytes:
    """``header`` with the path header set to ``path`` (every other byte kept)."""
    entry = bytes([len(PATH_HEADER)]) + PATH_HEADER + b"S" + _U32.pack(len(path)) + path
    start, end = found.table_start, found.table_end
    if start == end:  # no headers table: set the flag and insert one
        flags = _U16.unpack_from(header, _FLAGS_AT)[0] | _HEADERS
        table = _U32.pack(len(entry)) + entry
        return (
            header[:_FLAGS_AT]
            + _U16.pack(flags)
            + header[_FLAGS_AT + 2 : start]
            + table
            + (header[start:])
        )
    entries = header[start + 4 : end]
    if found.path is not None:
        entries = _without_path(entries)
    entries += entry
    return header[:start] + _U32.pack(len(entries)) + entries + header[end:]


def _skip_shortstr(header: bytes, at: int, present: int) -> int:
    return at + 1 + header[at] if present else at


def _find_path(header: bytes, at: int, end: int) -> bytes | None:
    """The path entry's value in the table bytes ``header[at:end]``, or None."""
    while at < end:
        key_length = header[at]
        key = header[at + 1 : at + 1 + key_length]
        at += 1 + key_length
        if key == PATH_HEADER and header[at] == ord("S"):
            size = _U32.unpack_from(header, at + 1)[0]
            return header[at + 5 : at + 5 + size]
        at = _skip_value(header, at)
    return None


def _without_path(entries: bytes) -> bytes:
    """The table entries ``entries`` without the path entry."""
    at = 0
    kept = []
    while at < len(entries):
        start = at
        key_length = entries[at]
        key = entries[at + 1 : at + 1 + key_length]
        at = _skip_value(entries, at + 1 + key_length)
        if key != PATH_HEADER:
            kept.append(entries[start:at])
    return b"".join(kept)


def _skip_value(data: bytes, at: int) -> int:
    """The offset after the typed field value at ``data[at]`` (its type tag)."""
    tag = data[at]
    size = _FIXED.get(tag)
    if size is not None:
        return at + 1 + size
    if tag in _SIZED:
        return at + 5 + _U32.unpack_from(data, at + 1)[0]
    raise WireError(f"unknown field type {chr(tag)!r} in a headers table")
