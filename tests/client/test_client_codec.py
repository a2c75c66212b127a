"""The client's hot-path codec, checked against the broker's codec and pamqp (no broker)."""

from __future__ import annotations

import datetime

from pamqp import commands

from plugmq.amqp import constants as C
from plugmq.amqp import methods
from plugmq.amqp.content import decode_properties
from plugmq.amqp.frames import FrameParser
from plugmq.client import codec


def _frames(parts: list[bytes | memoryview], frame_max: int = 131072) -> list:
    return FrameParser(frame_max).feed(b"".join(parts))


def test_publish_frames_decode_with_the_broker_codec() -> None:
    props = codec.encode_properties({"content_type": "text/plain", "delivery_mode": 2})
    frames = _frames(codec.encode_publish(3, "x", "a.b", True, props, b"hello", 131072))
    assert [(t, ch) for t, ch, _ in frames] == [(1, 3), (2, 3), (3, 3)]
    index, fields = methods.decode_method(frames[0][2])
    assert (index, fields[:4]) == (methods.BASIC_PUBLISH, ("x", "a.b", True, False))
    header = frames[1][2]
    assert codec.body_size(header) == 5
    assert decode_properties(header).content_type == "text/plain"
    assert frames[2][2] == b"hello"


def test_large_body_is_split_by_frame_max() -> None:
    body = bytes(range(256)) * 100  # 25600 bytes
    frames = _frames(codec.encode_publish(1, "", "q", False, codec.NO_PROPERTIES, body, 4096), 4096)
    bodies = [payload for kind, _, payload in frames if kind == C.FRAME_BODY]
    assert all(len(b) <= 4096 - C.FRAME_OVERHEAD for b in bodies)
    assert b"".join(bodies) == body


def test_empty_body_has_no_body_frame() -> None:
    frames = _frames(codec.encode_publish(1, "", "q", False, codec.NO_PROPERTIES, b"", 4096))
    assert [kind for kind, _, _ in frames] == [C.FRAME_METHOD, C.FRAME_HEADER]


def test_properties_match_pamqp() -> None:
    stamp = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    values = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "headers": {"a": 1, "b": "two", "c": {"nested": True}},
        "delivery_mode": 2,
        "priority": 5,
        "correlation_id": "c1",
        "reply_to": "r",
        "expiration": "60000",
        "message_id": "m1",
        "timestamp": stamp,
        "message_type": "t",
        "user_id": "guest",
        "app_id": "app",
    }
    assert codec.encode_properties(values) == commands.Basic.Properties(**values).marshal()
    assert codec.encode_properties({"type": "t"}) == codec.encode_properties({"message_type": "t"})


def test_deliver_get_ok_and_return_decode() -> None:
    route = methods.shortstr("ex") + methods.shortstr("rk")
    deliver = FrameParser().feed(
        methods.encode_deliver(1, methods.shortstr("ctag"), 7, True, route)
    )
    assert codec.decode_deliver(deliver[0][2]) == ("ctag", 7, True, "ex", "rk")
    get_ok = FrameParser().feed(methods.encode_get_ok(1, 9, False, route, 42))
    assert codec.decode_get_ok(get_ok[0][2]) == (9, False, "ex", "rk", 42)
    returned = FrameParser().feed(methods.encode_return(1, 312, "NO_ROUTE", route))
    assert codec.decode_return(returned[0][2]) == (312, "NO_ROUTE", "ex", "rk")


def test_confirms_and_client_acks() -> None:
    ack = FrameParser().feed(methods.encode_ack(1, 5, True))[0][2]
    assert codec.decode_confirm(ack) == (5, True)
    nack = FrameParser().feed(codec.encode_nack(1, 6, False, True))[0][2]
    assert methods.decode_method(nack) == (methods.BASIC_NACK, (6, False, True))
    reject = FrameParser().feed(codec.encode_reject(1, 8, False))[0][2]
    assert methods.decode_method(reject) == (methods.BASIC_REJECT, (8, False))
