"""Properties of the frame layer: round trips in any chunking, and no crash on any bytes.

The rule the parser must keep: whatever bytes arrive, ``FrameParser.feed`` returns frames or
raises an :class:`~plugmq.amqp.errors.AMQPError` (a ``FrameError``, 501), never an
``IndexError``/``struct.error``; the engine maps only ``AMQPError`` to a close code.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from plugmq.amqp import constants as C
from plugmq.amqp.errors import AMQPError, FrameError
from plugmq.amqp.frames import HEARTBEAT_FRAME, FrameParser, build_frame

FRAME_MAX = 4096

frame_types = st.sampled_from((C.FRAME_METHOD, C.FRAME_HEADER, C.FRAME_BODY, C.FRAME_HEARTBEAT))
frames = st.tuples(
    frame_types,
    st.integers(0, 0xFFFF),
    # Up to frame_max, not frame_max - 8: RabbitMQ's FRAME_SIZE_FUDGE (see FrameParser).
    st.binary(max_size=FRAME_MAX),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in itertools.pairwise(points)]


def feed_all(parser: FrameParser, chunks: list[bytes]) -> list[tuple[int, int, bytes]]:
    """Every frame the parser returns for ``chunks`` fed one after the other."""
    received = []
    for chunk in chunks:
        received += parser.feed(chunk)
    return received


@given(st.lists(frames, max_size=8), st.lists(st.integers(0, 1 << 16), max_size=20))
def test_frames_survive_any_chunking(sent: list, cuts: list[int]) -> None:
    data = b"".join(build_frame(*frame) for frame in sent)
    parser = FrameParser(FRAME_MAX)
    assert feed_all(parser, split(data, cuts)) == sent
    assert parser.buffered == 0


@given(st.lists(frames, min_size=1, max_size=4))
def test_frames_fed_one_byte_at_a_time(sent: list) -> None:
    data = b"".join(build_frame(*frame) for frame in sent)
    parser = FrameParser(FRAME_MAX)
    assert feed_all(parser, [data[i : i + 1] for i in range(len(data))]) == sent


def test_heartbeat_frame_constant_is_a_heartbeat_on_channel_zero() -> None:
    assert FrameParser().feed(HEARTBEAT_FRAME) == [(C.FRAME_HEARTBEAT, 0, b"")]


@given(frames, st.integers(0, 255).filter(lambda octet: octet != C.FRAME_END))
def test_wrong_frame_end_octet_is_a_frame_error(frame: tuple, octet: int) -> None:
    data = build_frame(*frame)[:-1] + bytes((octet,))
    parser = FrameParser(FRAME_MAX)
    try:
        parser.feed(data)
    except FrameError as error:
        assert error.reply_code == C.FRAME_ERROR
    else:
        raise AssertionError("a wrong frame-end octet was accepted")


@given(st.integers(0, 255).filter(lambda t: t not in (1, 2, 3, 8)), st.binary(max_size=64))
def test_unknown_frame_type_is_a_frame_error(frame_type: int, payload: bytes) -> None:
    parser = FrameParser(FRAME_MAX)
    try:
        parser.feed(build_frame(frame_type, 1, payload))
    except FrameError as error:
        assert "unknown frame type" in str(error)
    else:
        raise AssertionError(f"frame type {frame_type} was accepted")


def test_payload_of_exactly_frame_max_is_accepted() -> None:
    # Clients that split bodies at frame_max (not frame_max - 8) are served, as RabbitMQ
    # 3.10+ serves them: rabbit_reader allows PayloadSize up to FrameMax - 8 + FRAME_SIZE_FUDGE.
    frame = (C.FRAME_BODY, 1, bytes(FRAME_MAX))
    assert FrameParser(FRAME_MAX).feed(build_frame(*frame)) == [frame]


@given(st.integers(FRAME_MAX + 1, 0xFFFFFFFF))
def test_frame_larger_than_frame_max_is_refused_from_its_header_alone(size: int) -> None:
    # The size is checked as soon as the 7-byte header is in: the broker must not buffer
    # megabytes of a frame it is going to refuse anyway.
    header = bytes((C.FRAME_BODY, 0, 1)) + size.to_bytes(4, "big") + b"x"
    parser = FrameParser(FRAME_MAX)
    try:
        parser.feed(header)
    except FrameError as error:
        assert f"{size} bytes exceeds frame_max {FRAME_MAX}" in str(error)
    else:
        raise AssertionError(f"a frame of {size} bytes was accepted")


@settings(max_examples=500)
@given(st.lists(st.binary(max_size=300), max_size=6), st.integers(4096, 1 << 17))
def test_arbitrary_bytes_never_crash_the_parser(chunks: list[bytes], frame_max: int) -> None:
    parser = FrameParser(frame_max)
    try:
        for frame_type, _channel, payload in feed_all(parser, chunks):
            assert frame_type in (1, 2, 3, 8)
            assert len(payload) <= frame_max
    except AMQPError as error:
        assert error.reply_code == C.FRAME_ERROR
