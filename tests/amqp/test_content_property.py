"""Properties of content headers and bodies, checked against pamqp.

:func:`peek_header` reads four fields by skipping over the others; it must agree with pamqp's
full decoding for every combination of properties a client can send, and on arbitrary bytes
it must return or raise an ``AMQPError`` (never ``IndexError``/``UnicodeDecodeError``).
"""

from __future__ import annotations

import contextlib
import datetime
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from plugmq.amqp import constants as C
from plugmq.amqp.content import (
    REPLY_TO_BIT,
    REPLY_TO_BYTE,
    decode_properties,
    encode_header,
    peek_header,
    reply_to_span,
)
from plugmq.amqp.errors import AMQPError
from plugmq.amqp.frames import FrameParser
from plugmq.amqp.methods import encode_content

# pamqp sets no flag for a falsy value, so "" is "absent" on the wire: generate None instead.
short = st.none() | st.text(min_size=1, max_size=40)
header_values = st.none() | st.booleans() | st.integers(-(1 << 31), (1 << 31) - 1) | short
properties = st.builds(
    commands.Basic.Properties,
    content_type=short,
    content_encoding=short,
    headers=st.none() | st.dictionaries(st.text(min_size=1, max_size=10), header_values),
    delivery_mode=st.none() | st.sampled_from((1, 2)),
    priority=st.none() | st.integers(0, 255),
    correlation_id=short,
    reply_to=short,
    expiration=st.none() | st.integers(0, 1 << 31).map(str),
    message_id=short,
    # pamqp round-trips timestamps below 2**32 s only (year 2106): enough for any client.
    timestamp=st.none()
    | st.integers(0, (1 << 32) - 1).map(lambda s: datetime.datetime.fromtimestamp(s, datetime.UTC)),
    message_type=short,
    user_id=short,
    app_id=short,
)
body_sizes = st.integers(0, (1 << 63) - 1)


def client_header(body_size: int, props: commands.Basic.Properties) -> bytes:
    """The content-header payload a pamqp-based client sends."""
    return pamqp_frame.marshal(ContentHeader(0, body_size, props), 1)[7:-1]


@given(properties, body_sizes)
def test_reply_to_span_finds_the_reply_to_pamqp_encoded(
    props: commands.Basic.Properties, size: int
) -> None:
    payload = client_header(size, props)
    assert bool(payload[REPLY_TO_BYTE] & REPLY_TO_BIT) == (props.reply_to is not None)
    if props.reply_to is None:
        return
    start, end = reply_to_span(payload)
    assert payload[start:end].decode() == props.reply_to
    # Splicing in another value changes that property only (direct reply-to's rewrite).
    spliced = payload[: start - 1] + b"\x05other" + payload[end:]
    decoded = decode_properties(spliced)
    props.reply_to = "other"
    assert decoded == props


@given(properties, body_sizes)
def test_peek_header_agrees_with_pamqp(props: commands.Basic.Properties, size: int) -> None:
    summary = peek_header(client_header(size, props))
    assert summary.body_size == size
    assert summary.delivery_mode == (props.delivery_mode or 1)
    assert summary.priority == (props.priority or 0)
    assert summary.expiration == props.expiration


@given(properties, body_sizes)
def test_decode_properties_and_encode_header_round_trip(
    props: commands.Basic.Properties, size: int
) -> None:
    payload = encode_header(size, props)
    assert payload == client_header(size, props)
    assert dict(decode_properties(payload)) == dict(props)


@settings(max_examples=200)
@given(
    st.integers(1, 0xFFFF),
    properties,
    st.binary(max_size=20000),
    st.integers(C.FRAME_MIN_SIZE, 3 * C.FRAME_MIN_SIZE),
)
def test_encode_content_decodes_with_pamqp(
    channel: int, props: commands.Basic.Properties, body: bytes, frame_max: int
) -> None:
    data = encode_content(channel, encode_header(len(body), props), body, frame_max)
    # Every frame respects frame_max: the broker's own parser at that limit accepts them all.
    frames = FrameParser(frame_max).feed(data)
    assert sum(C.FRAME_OVERHEAD + len(payload) for _, _, payload in frames) == len(data)
    position, received = 0, []
    while position < len(data):
        consumed, got_channel, value = pamqp_frame.unmarshal(data[position:])
        assert got_channel == channel
        received.append(value)
        position += consumed
    header, bodies = received[0], received[1:]
    assert isinstance(header, ContentHeader)
    assert header.body_size == len(body) and dict(header.properties) == dict(props)
    assert all(isinstance(part, ContentBody) and part.value for part in bodies)
    assert b"".join(part.value for part in bodies) == body


@settings(max_examples=1000)
@given(st.integers(0, 0xFFFF), st.binary(max_size=200))
def test_arbitrary_flags_and_bytes_never_crash_peek_header(flags: int, rest: bytes) -> None:
    payload = struct.pack(">HHQH", C.BASIC, 0, 10, flags) + rest
    for read in (peek_header, decode_properties):
        with contextlib.suppress(AMQPError):
            read(payload)


@given(st.binary(max_size=40))
def test_arbitrary_short_headers_never_crash_peek_header(payload: bytes) -> None:
    try:
        peek_header(payload)
    except AMQPError as error:
        assert error.reply_code in (C.FRAME_ERROR, C.SYNTAX_ERROR, C.UNEXPECTED_FRAME)


def test_header_of_another_class_is_an_unexpected_frame() -> None:
    # RabbitMQ's rabbit_command_assembler: "expected content header for class 60, got one for
    # class 50 instead" is an unexpected_frame (505).
    try:
        peek_header(struct.pack(">HHQH", C.QUEUE, 0, 1, 0))
    except AMQPError as error:
        assert error.reply_code == C.UNEXPECTED_FRAME
    else:
        raise AssertionError("a queue-class content header was accepted")
