"""Content headers for in-broker publishes: built from properties, or checked when given raw."""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands

from plugmq.amqp import constants as C
from plugmq.amqp.content import HeaderSummary, encode_header, peek_header
from plugmq.amqp.errors import PreconditionFailed

Properties = commands.Basic.Properties | dict[str, Any] | None

_NO_PROPERTIES = struct.Struct(">HHQH")


def build_header(body_size: int, properties: Properties) -> bytes:
    """The content-header payload for ``properties`` (a pamqp object, a dict of its field
    names such as ``{"delivery_mode": 2, "headers": {...}}``, or None for no properties)."""
    if properties is None:
        return _NO_PROPERTIES.pack(C.BASIC, 0, body_size, 0)
    if isinstance(properties, dict):
        properties = commands.Basic.Properties(**properties)
    return encode_header(body_size, properties)


def check_header(header: bytes, body_size: int) -> HeaderSummary:
    """What the engine reads from a raw header; 406 when its body size is not the body's.

    Malformed headers raise what a channel raises for them (501, 502, 505).
    """
    summary = peek_header(header)
    if summary.body_size != body_size:
        raise PreconditionFailed(
            f"content header announces {summary.body_size} body bytes, the body has {body_size}",
            60,
            40,
        )
    return summary
