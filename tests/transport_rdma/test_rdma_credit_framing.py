"""Sans-IO pieces of the RDMA transport: framing, credit accounting, buffer rings."""

from __future__ import annotations

import pytest

from plugmq_transport_rdma.credit import CreditError, FlowControl
from plugmq_transport_rdma.framing import (
    FLAG_MORE,
    HEADER_SIZE,
    FramingError,
    Kind,
    decode_header,
    decode_hello,
    encode_header,
    encode_hello,
    split,
)
from plugmq_transport_rdma.rings import RecvRing, RingError, SendRing


def test_header_round_trip_and_wraparound() -> None:
    header = decode_header(encode_header(Kind.DATA, 2**32 + 5, 3, FLAG_MORE) + b"abc", 11 + 4)
    assert (header.kind, header.flags, header.length, header.returned) == (
        Kind.DATA,
        FLAG_MORE,
        3,
        5,
    )


@pytest.mark.parametrize(
    ("message", "received", "match"),
    [
        (b"\x02", 1, "shorter than a header"),
        (encode_header(Kind.DATA, 0, 10), HEADER_SIZE + 3, "says 10 payload bytes"),
        (bytes([9]) + encode_header(Kind.DATA, 0, 0)[1:], HEADER_SIZE, "unknown message kind"),
    ],
)
def test_bad_headers_are_framing_errors(message: bytes, received: int, match: str) -> None:
    with pytest.raises(FramingError, match=match):
        decode_header(message, received)


def test_hello_round_trip_and_checks() -> None:
    hello = decode_hello(encode_hello(16, 16384, 0xDEADBEEF000, 77))
    assert (hello.buffers, hello.buffer_size, hello.credit_addr, hello.credit_rkey) == (
        16,
        16384,
        0xDEADBEEF000,
        77,
    )
    with pytest.raises(FramingError, match="bad magic"):
        decode_hello(b"XXXX" + encode_hello(16, 16384, 0, 0)[4:])
    with pytest.raises(FramingError, match="too small"):
        decode_hello(encode_hello(1, 16384, 0, 0))


def test_split_marks_all_but_last_chunk() -> None:
    pieces = list(split(memoryview(b"x" * 250), 100 + HEADER_SIZE))
    assert [len(chunk) for chunk, _ in pieces] == [100, 100, 50]
    assert [flags for _, flags in pieces] == [FLAG_MORE, FLAG_MORE, 0]
    assert list(split(memoryview(b""), 64)) == []


def test_only_hello_before_the_peers_hello() -> None:
    flow = FlowControl(4)
    assert not flow.can_send(Kind.DATA)
    assert flow.can_send(Kind.HELLO)
    flow.take(Kind.HELLO)
    assert not flow.can_send(Kind.HELLO)
    flow.on_hello(8)
    assert flow.credit == 7  # the HELLO used one of the peer's 8 buffers


def test_credit_is_spent_and_returned_cumulatively() -> None:
    flow = FlowControl(4)
    flow.on_hello(3)
    for _ in range(3):
        flow.take(Kind.DATA)
    assert flow.credit == 0
    assert not flow.can_send(Kind.DATA)
    flow.on_returned(2)
    assert flow.credit == 2
    flow.on_returned(1)  # stale (older) report: ignored
    flow.on_returned(2)  # duplicate: ignored
    assert flow.credit == 2
    with pytest.raises(CreditError, match="only 3 sent"):
        flow.on_returned(4)


def test_returned_count_wraps_at_32_bits() -> None:
    flow = FlowControl(4)
    flow.on_hello(4)
    flow.sent = flow.returned_by_peer = 2**32 - 1
    flow.take(Kind.DATA)
    flow.take(Kind.DATA)
    flow.on_returned(1)  # (2**32 + 1) mod 2**32
    assert flow.returned_by_peer == 2**32 + 1
    assert flow.credit == 4


def test_announce_threshold_is_half_the_ring() -> None:
    flow = FlowControl(8)
    flow.on_hello(8)
    for _ in range(3):
        flow.on_repost()
    assert not flow.should_announce()
    flow.on_repost()
    assert flow.should_announce()
    assert flow.announce() == 4
    assert flow.owed == 0
    flow.on_repost()
    assert flow.take(Kind.DATA) == 5  # every header carries the running count


def test_rings_follow_posting_order() -> None:
    sends = SendRing(2)
    first, second = sends.acquire(), sends.acquire()
    assert sends.free() == 0
    with pytest.raises(RingError):
        sends.acquire()
    assert sends.complete() == first
    assert sends.complete() == second
    receives = RecvRing(2)
    assert receives.complete() == 0
    receives.repost(0)
    assert [receives.complete(), receives.complete()] == [1, 0]
    with pytest.raises(RingError):
        receives.complete()
