"""The wire format inside each RDMA buffer (sans-IO: no trio, no pyverbs).

Every RDMA SEND carries exactly one message in one registered buffer::

    +------+-------+----------+--------+----------+------------------+
    | kind | flags | sequence | length | returned | payload (length) |
    |  u8  |  u8   |   u16    |  u32   |   u32    |                  |
    +------+-------+----------+--------+----------+------------------+

``sequence`` counts the sender's messages (mod 2**16): the receiver checks it, so a lost,
reordered or overwritten buffer is a clear protocol error instead of corrupt AMQP bytes.
``returned`` is the sender's running count (mod 2**32) of receive buffers it has reposted,
i.e. credits it gives back (see :mod:`.credit`). The same count is also written by RDMA WRITE
into the peer's *credit word*, which consumes no receive buffer, so returning credits never
needs a credit. A write larger than one buffer
is split into several DATA messages; all but the last have :data:`FLAG_MORE` set, and the
receiver joins them simply by handing the bytes to the reader in order (AMQP is a byte stream).

The first message each side sends is HELLO: a magic, a version, its receive-buffer count and
size (so two peers with different ``--rdma-buffers`` still agree), and the address and rkey of
its credit word.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

HEADER = struct.Struct("!BBHII")
HEADER_SIZE = HEADER.size
HELLO = struct.Struct("!4sHHIIQI")
MAGIC = b"PMQR"
VERSION = 1
FLAG_MORE = 0x01
#: Smallest buffer that holds a header and a HELLO.
MIN_BUFFER_SIZE = 64


class FramingError(Exception):
    """The peer sent something that is not this protocol (the connection is then broken)."""


class Kind(IntEnum):
    """What a message is."""

    HELLO = 1  # first message of each side: ring and credit word
    DATA = 2  # stream bytes
    FIN = 4  # send_eof: no more data from this side
    CLOSE = 5  # aclose: this side is gone (its peer's sends become broken)


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded message header."""

    kind: Kind
    flags: int
    length: int
    returned: int
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class Hello:
    """A decoded HELLO payload: the sender's receive ring."""

    buffers: int
    buffer_size: int
    credit_addr: int
    credit_rkey: int


def encode_header(
    kind: Kind, returned: int, length: int, flags: int = 0, sequence: int = 0
) -> bytes:
    """The header of a message (``returned`` mod 2**32, ``sequence`` mod 2**16)."""
    return HEADER.pack(kind, flags, sequence & 0xFFFF, length, returned & 0xFFFFFFFF)


def decode_header(data: bytes, received: int) -> Header:
    """Decode the header of a message of ``received`` bytes; raise :class:`FramingError`."""
    if received < HEADER_SIZE:
        raise FramingError(f"message of {received} bytes is shorter than a header")
    kind, flags, sequence, length, returned = HEADER.unpack_from(data)
    if length != received - HEADER_SIZE:
        raise FramingError(f"header says {length} payload bytes, message has {received}")
    try:
        return Header(Kind(kind), flags, length, returned, sequence)
    except ValueError:
        raise FramingError(f"unknown message kind {kind}") from None


def encode_hello(buffers: int, buffer_size: int, credit_addr: int, credit_rkey: int) -> bytes:
    """The payload of a HELLO message."""
    return HELLO.pack(MAGIC, VERSION, 0, buffers, buffer_size, credit_addr, credit_rkey)


def decode_hello(payload: bytes) -> Hello:
    """Decode and check a HELLO payload; raise :class:`FramingError`."""
    if len(payload) != HELLO.size:
        raise FramingError(f"HELLO of {len(payload)} bytes (expected {HELLO.size})")
    magic, version, _, buffers, buffer_size, addr, rkey = HELLO.unpack(payload)
    if magic != MAGIC:
        raise FramingError(f"bad magic {magic!r}: the peer does not speak plugmq RDMA")
    if version != VERSION:
        raise FramingError(f"peer speaks version {version}, this side {VERSION}")
    if buffers < 2 or buffer_size < MIN_BUFFER_SIZE:
        raise FramingError(f"peer ring of {buffers} x {buffer_size} bytes is too small")
    return Hello(buffers, buffer_size, addr, rkey)


def payload_size(buffer_size: int) -> int:
    """Stream bytes that fit in one buffer."""
    return buffer_size - HEADER_SIZE


def split(data: memoryview, buffer_size: int) -> Iterator[tuple[memoryview, int]]:
    """Cut ``data`` into ``(chunk, flags)`` pieces that each fit one buffer.

    Every piece but the last carries :data:`FLAG_MORE`.
    """
    size = payload_size(buffer_size)
    for start in range(0, len(data), size):
        end = start + size
        yield data[start:end], FLAG_MORE if end < len(data) else 0
