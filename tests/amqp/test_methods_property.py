"""Properties of the method codec, checked against pamqp as the reference decoder/encoder.

* What plugmq encodes by hand (deliver, ack, nack, get-ok, queue.declare-ok) decodes with
  ``pamqp.frame.unmarshal`` to the same fields.
* What a client encodes with pamqp decodes with :func:`decode_method` to the same fields.
* ``decode_method`` on any bytes returns or raises an ``AMQPError``: undecodable fields are a
  ``FrameError`` (501, RabbitMQ's ``rabbit_misc:frame_error`` "cannot decode"), an unknown
  method ``NotImplemented_`` (540). Anything else would escape the engine's error mapping.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pamqp_frame

from plugmq.amqp import constants as C
from plugmq.amqp import methods as M
from plugmq.amqp.errors import AMQPError, FrameError, NotImplemented_

channels = st.integers(1, 0xFFFF)
short_strings = st.text(max_size=60)  # at most 240 bytes of UTF-8: always a valid shortstr
# pamqp reads a longlong as signed; delivery tags count from 1 and never reach 2**63.
tags = st.integers(0, (1 << 63) - 1)
longs = st.integers(0, (1 << 32) - 1)


def unmarshal(data: bytes) -> tuple[int, object]:
    """(channel, pamqp object) of one complete frame; the frame must use all of ``data``."""
    consumed, channel, method = pamqp_frame.unmarshal(data)
    assert consumed == len(data)
    return channel, method


@given(channels, short_strings, tags, st.booleans(), short_strings, short_strings)
def test_encode_deliver_decodes_with_pamqp(
    channel: int, tag: str, delivery_tag: int, redelivered: bool, exchange: str, key: str
) -> None:
    data = M.encode_deliver(
        channel, M.shortstr(tag), delivery_tag, redelivered, M.shortstr(exchange) + M.shortstr(key)
    )
    got_channel, deliver = unmarshal(data)
    assert got_channel == channel
    assert isinstance(deliver, commands.Basic.Deliver)
    assert (deliver.consumer_tag, deliver.delivery_tag, deliver.redelivered) == (
        tag,
        delivery_tag,
        redelivered,
    )
    assert (deliver.exchange, deliver.routing_key) == (exchange, key)


@given(channels, tags, st.booleans(), short_strings, short_strings, longs)
def test_encode_get_ok_decodes_with_pamqp(
    channel: int, delivery_tag: int, redelivered: bool, exchange: str, key: str, count: int
) -> None:
    data = M.encode_get_ok(
        channel, delivery_tag, redelivered, M.shortstr(exchange) + M.shortstr(key), count
    )
    got_channel, get_ok = unmarshal(data)
    assert got_channel == channel and isinstance(get_ok, commands.Basic.GetOk)
    assert (get_ok.delivery_tag, get_ok.redelivered, get_ok.message_count) == (
        delivery_tag,
        redelivered,
        count,
    )
    assert (get_ok.exchange, get_ok.routing_key) == (exchange, key)


@given(channels, tags, st.booleans())
def test_encode_ack_and_nack_decode_with_pamqp(channel: int, tag: int, multiple: bool) -> None:
    _, ack = unmarshal(M.encode_ack(channel, tag, multiple))
    assert isinstance(ack, commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (tag, multiple)
    _, nack = unmarshal(M.encode_nack(channel, tag, multiple))
    assert isinstance(nack, commands.Basic.Nack)
    assert (nack.delivery_tag, nack.multiple, nack.requeue) == (tag, multiple, False)


@given(channels, short_strings, longs, longs)
def test_encode_queue_declare_ok_decodes_with_pamqp(
    channel: int, queue: str, messages: int, consumers: int
) -> None:
    got_channel, declare_ok = unmarshal(
        M.encode_queue_declare_ok(channel, queue, messages, consumers)
    )
    assert got_channel == channel and isinstance(declare_ok, commands.Queue.DeclareOk)
    assert (declare_ok.queue, declare_ok.message_count, declare_ok.consumer_count) == (
        queue,
        messages,
        consumers,
    )


def method_payload(method: object) -> bytes:
    """The payload (method id and fields) of ``method`` as pamqp frames it."""
    return pamqp_frame.marshal(method, 1)[7:-1]


exchange_names = st.from_regex(r"\A[a-zA-Z0-9_.:-]{0,40}\Z")


@given(exchange_names, short_strings, st.booleans())
def test_publish_from_pamqp_decodes_to_the_same_fields(
    exchange: str, key: str, mandatory: bool
) -> None:
    payload = method_payload(
        commands.Basic.Publish(exchange=exchange, routing_key=key, mandatory=mandatory)
    )
    index, fields = M.decode_method(payload)
    assert index == M.BASIC_PUBLISH
    assert fields[:4] == (exchange, key, mandatory, False)
    assert fields[4] == M.shortstr(exchange) + M.shortstr(key)


@given(tags, st.booleans(), st.booleans())
def test_ack_nack_reject_from_pamqp_decode_to_the_same_fields(
    tag: int, multiple: bool, requeue: bool
) -> None:
    ack = M.decode_method(method_payload(commands.Basic.Ack(tag, multiple)))
    assert ack == (M.BASIC_ACK, (tag, multiple))
    nack = M.decode_method(method_payload(commands.Basic.Nack(tag, multiple, requeue)))
    assert nack == (M.BASIC_NACK, (tag, multiple, requeue))
    reject = M.decode_method(method_payload(commands.Basic.Reject(tag, requeue)))
    assert reject == (M.BASIC_REJECT, (tag, requeue))


table_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 63) - 1)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, width=32),  # pamqp encodes a float as 32 bits
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
tables = st.dictionaries(st.text(min_size=1, max_size=20), table_values, max_size=5)


@given(st.from_regex(r"\A[a-zA-Z0-9_.:-]{0,40}\Z"), st.booleans(), st.booleans(), tables)
def test_cold_method_round_trips_through_pamqp(
    queue: str, durable: bool, exclusive: bool, arguments: dict
) -> None:
    sent = commands.Queue.Declare(
        queue=queue, durable=durable, exclusive=exclusive, arguments=arguments
    )
    index, got = M.decode_method(method_payload(sent))
    assert index == sent.index
    assert (got.queue, got.durable, got.exclusive) == (queue, durable, exclusive)
    assert got.arguments == arguments


method_indexes = st.sampled_from(sorted(commands.INDEX_MAPPING)) | st.integers(0, 0xFFFFFFFF)


@pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")
@settings(max_examples=1000)
@given(method_indexes, st.binary(max_size=200))
def test_arbitrary_method_bytes_decode_or_raise_an_amqp_error(index: int, fields: bytes) -> None:
    with contextlib.suppress(FrameError, NotImplemented_):
        M.decode_method(struct.pack(">I", index) + fields)


@given(st.binary(max_size=3))
def test_method_frame_shorter_than_its_id_is_a_frame_error(payload: bytes) -> None:
    try:
        M.decode_method(payload)
    except FrameError as error:
        assert error.reply_code == C.FRAME_ERROR
    else:
        raise AssertionError("a method without a method id was decoded")


def nested_tables(depth: int) -> bytes:
    """A field table holding a table holding a table ... ``depth`` deep (length-prefixed)."""
    inner = b""
    for _ in range(depth):
        inner = b"\x01kF" + struct.pack(">I", len(inner)) + inner
    return struct.pack(">I", len(inner)) + inner


def test_deeply_nested_arguments_are_a_frame_error_not_a_recursion_error() -> None:
    # 5000 levels fit in 35 kB, well inside one 128 kB frame; pamqp recurses per level.
    payload = (
        struct.pack(">IH", commands.Queue.Declare.index, 0) + b"\x01q\x00" + nested_tables(5000)
    )
    try:
        M.decode_method(payload)
    except FrameError as error:
        assert (error.class_id, error.method_id) == (50, 10)
    else:
        raise AssertionError("5000 nested tables decoded")


@given(st.sampled_from(sorted(set(range(1 << 16)) - {i >> 16 for i in commands.INDEX_MAPPING})))
def test_unknown_class_is_not_implemented(class_id: int) -> None:
    try:
        M.decode_method(struct.pack(">HH", class_id, 10))
    except AMQPError as error:
        assert error.reply_code == C.NOT_IMPLEMENTED
        assert (error.class_id, error.method_id) == (class_id, 10)
    else:
        raise AssertionError(f"class {class_id} decoded")
