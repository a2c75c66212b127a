"""Field tables kept as the publisher encoded them, and content headers rewritten in place.

Dead-lettering adds ``x-death`` to a message's headers and drops its ``expiration``. Decoding
the properties with pamqp and encoding them again would change what the publisher sent: pamqp
encodes every ``int`` in the narrowest width and every ``float`` as a 32-bit float, so a header
sent as a 64-bit ``long`` or a ``double`` would come back with another type. Instead the table
is split into ``(name, encoded value)`` pairs without decoding the values, only the entries
the broker writes are replaced, and every other property is copied byte for byte.

Sans-IO: no trio here.
"""

from __future__ import annotations

import datetime
import decimal
import struct
from collections.abc import Iterable
from typing import Any

from pamqp import decode

from plugmq.amqp.errors import SyntaxError_

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_DOUBLE = struct.Struct(">d")

#: Encoded size of the fixed-width field types (type octet excluded).
_FIXED = {
    b"t": 1, b"b": 1, b"B": 1, b"U": 2, b"s": 2, b"u": 2, b"I": 4, b"i": 4,
    b"L": 8, b"l": 8, b"f": 4, b"d": 8, b"D": 5, b"T": 8, b"V": 0,
}  # fmt: skip
#: Field types whose value is a 32-bit length followed by that many bytes.
_SIZED = frozenset((b"S", b"x", b"A", b"F"))

# Property flags of basic content headers, in wire order.
_HEADERS = 1 << 13
_EXPIRATION = 1 << 8
_SHORTSTR_FLAGS = (1 << 15, 1 << 14)  # content-type, content-encoding (before headers)


def split_table(data: bytes) -> list[tuple[str, bytes]]:
    """Split an encoded table body (without its length prefix) into (name, typed value)."""
    fields = []
    position = 0
    try:
        while position < len(data):
            length = data[position]
            name = data[position + 1 : position + 1 + length].decode()
            position += 1 + length
            end = _value_end(data, position)
            fields.append((name, data[position:end]))
            position = end
    except (IndexError, KeyError, UnicodeDecodeError, struct.error) as error:
        raise SyntaxError_(f"malformed field table: {error}") from error
    return fields


def _value_end(data: bytes, position: int) -> int:
    kind = data[position : position + 1]
    if kind in _SIZED:
        return position + 5 + _U32.unpack_from(data, position + 1)[0]
    return position + 1 + _FIXED[kind]


def join_table(fields: Iterable[tuple[str, bytes]]) -> bytes:
    """Encode (name, typed value) pairs as a field table, length prefix included."""
    body = b"".join(_shortstr(name) + value for name, value in fields)
    return _U32.pack(len(body)) + body


def decode_value(encoded: bytes) -> Any:
    """Decode one typed value produced by :func:`split_table` (pamqp's decoder)."""
    try:
        return decode.embedded_value(encoded)[1]
    except (ValueError, IndexError, struct.error) as error:
        raise SyntaxError_(f"malformed field value: {error}") from error


def encode_value(value: Any) -> bytes:
    """Encode a value with the field types RabbitMQ uses for the headers it writes.

    Integers are 64-bit ``long`` (RabbitMQ writes the x-death ``count`` as one), strings are
    long strings, times are timestamps.
    """
    if isinstance(value, bool):
        return b"t" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"l" + _I64.pack(value)
    if isinstance(value, str):
        raw = value.encode()
        return b"S" + _U32.pack(len(raw)) + raw
    if isinstance(value, bytes | bytearray):
        return b"x" + _U32.pack(len(value)) + bytes(value)
    if isinstance(value, datetime.datetime):
        return b"T" + _U64.pack(int(value.timestamp()))
    if isinstance(value, float):
        return b"d" + _DOUBLE.pack(value)
    if isinstance(value, dict):
        return b"F" + join_table((key, encode_value(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        items = b"".join(encode_value(item) for item in value)
        return b"A" + _U32.pack(len(items)) + items
    if isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.as_tuple()
        number = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return b"D" + struct.pack(">Bi", -int(exponent), number)
    if value is None:
        return b"V"
    raise TypeError(f"cannot encode {type(value).__name__} in a field table")


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    return bytes((len(raw),)) + raw


def rewrite_header(
    payload: bytes, headers: list[tuple[str, bytes]], drop_expiration: bool
) -> bytes:
    """A content-header payload with ``headers`` as its headers table.

    Every other property is copied as received; ``drop_expiration`` removes ``expiration``
    (a dead-lettered message must not expire again because of the TTL it died of).
    """
    flags = struct.unpack_from(">H", payload, 12)[0]
    if flags & 1:
        raise SyntaxError_("content header with a continuation flag word is not supported")
    before, position = _skip_shortstrs(payload, 14, flags, _SHORTSTR_FLAGS)
    if flags & _HEADERS:
        position += 4 + _U32.unpack_from(payload, position)[0]
    after = payload[position:]
    new_flags = flags | _HEADERS
    if drop_expiration and flags & _EXPIRATION:
        after = _without_expiration(after, flags)
        new_flags &= ~_EXPIRATION
    return payload[:12] + struct.pack(">H", new_flags) + before + join_table(headers) + after


def _skip_shortstrs(
    payload: bytes, position: int, flags: int, which: tuple[int, ...]
) -> tuple[bytes, int]:
    start = position
    for flag in which:
        if flags & flag:
            position += 1 + payload[position]
    return payload[start:position], position


def _without_expiration(after: bytes, flags: int) -> bytes:
    """Cut the expiration short string out of the properties that follow the headers."""
    position = 0
    if flags & (1 << 12):  # delivery-mode
        position += 1
    if flags & (1 << 11):  # priority
        position += 1
    for flag in (1 << 10, 1 << 9):  # correlation-id, reply-to
        if flags & flag:
            position += 1 + after[position]
    end = position + 1 + after[position]
    return after[:position] + after[end:]


def headers_of(payload: bytes) -> list[tuple[str, bytes]]:
    """The headers table of a content-header payload as (name, typed value) pairs."""
    flags = struct.unpack_from(">H", payload, 12)[0]
    if not flags & _HEADERS:
        return []
    _, position = _skip_shortstrs(payload, 14 + (2 if flags & 1 else 0), flags, _SHORTSTR_FLAGS)
    length = _U32.unpack_from(payload, position)[0]
    return split_table(payload[position + 4 : position + 4 + length])
