"""Splitting a byte stream into AMQP frames, and building frames. Sans-IO.

The parser validates what the specification makes the server responsible for: the frame-end
octet, the negotiated maximum frame size and the frame type. Payloads are returned as ``bytes``
so that a body can be kept as it is, without another copy, until it is delivered.
"""

from __future__ import annotations

import struct

from plugmq.amqp import constants as C
from plugmq.amqp.errors import FrameError

_HEADER = struct.Struct(">BHI")
_KNOWN_TYPES = frozenset((C.FRAME_METHOD, C.FRAME_HEADER, C.FRAME_BODY, C.FRAME_HEARTBEAT))

Frame = tuple[int, int, bytes]
"""(frame type, channel number, payload)."""

HEARTBEAT_FRAME = bytes((C.FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, C.FRAME_END))


class FrameParser:
    """Accumulates received bytes and yields complete frames.

    ``frame_max`` is the negotiated maximum frame size, which by the specification includes
    the 8 bytes of framing. Like RabbitMQ (``rabbit_reader``'s ``FRAME_SIZE_FUDGE``), a payload
    of up to ``frame_max`` bytes is accepted, because clients that split bodies at
    ``frame_max`` instead of ``frame_max - 8`` are common; a larger payload is a
    :class:`FrameError` (501) naming both sizes, as is a wrong frame-end octet or type.
    """

    __slots__ = ("_buffer", "frame_max")

    def __init__(self, frame_max: int = 131072) -> None:
        self._buffer = bytearray()
        self.frame_max = frame_max

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return every frame they complete, in order."""
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        position = 0
        available = len(buffer)
        unpack_from = _HEADER.unpack_from
        limit = self.frame_max
        while available - position >= C.FRAME_OVERHEAD:
            frame_type, channel, size = unpack_from(buffer, position)
            if size > limit:
                raise FrameError(f"frame payload of {size} bytes exceeds frame_max {limit}")
            end = position + C.FRAME_HEADER_SIZE + size
            if end >= available:
                break
            if buffer[end] != C.FRAME_END:
                raise FrameError(f"frame-end octet is 0x{buffer[end]:02x}, not 0xce")
            if frame_type not in _KNOWN_TYPES:
                raise FrameError(f"unknown frame type {frame_type}")
            frames.append((frame_type, channel, bytes(buffer[position + 7 : end])))
            position = end + 1
        if position:
            del buffer[:position]
        return frames


def build_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    """One frame around ``payload``."""
    return b"".join((_HEADER.pack(frame_type, channel, len(payload)), payload, b"\xce"))
