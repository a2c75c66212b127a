"""Connection output: the direct path at the end of a batch and the writer task share one order.

In-process tests on fake streams (no broker process): a batch's output goes out with one
non-blocking send; what the stream does not take, and everything sent while the writer is in
``send_all``, goes out after it, by the writer, never interleaved with it.
"""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from plugmq.broker import connection as connection_module
from plugmq.broker.connection import Connection
from plugmq.transport import DirectStream


class FakeDirectStream(trio.abc.HalfCloseableStream):
    """Records what is sent, in order; ``room`` bounds direct sends, ``gate`` holds send_all."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.room = 1 << 30
        self.gate = trio.Event()
        self.gate.set()
        self.sending = False
        self.broken = False
        self.direct_sends = 0

    def try_send(self, data: bytes | memoryview) -> int:
        assert not self.sending, "a direct send while send_all runs"
        if self.broken:
            raise trio.BrokenResourceError("peer gone")
        self.direct_sends += 1
        taken = min(self.room, len(data))
        self.room -= taken
        self.received += data[:taken]
        return taken

    def try_receive(self, max_bytes: int) -> bytes | None:
        return None

    async def wait_readable(self) -> None:
        await trio.sleep_forever()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.sending, "two concurrent send_all"
        self.sending = True
        try:
            await self.gate.wait()
            self.received += data
        finally:
            self.sending = False

    async def wait_send_all_might_not_block(self) -> None:
        await self.gate.wait()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        return b""  # pragma: no cover

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def make_connection(stream: trio.abc.Stream) -> Connection:
    return Connection(SimpleNamespace(channel_max=2047), stream, "test")  # type: ignore[arg-type]


def in_batch(connection: Connection, *chunks: bytes) -> None:
    """Send ``chunks`` as a reader's batch would (its handlers' output)."""
    connection_module._start_batch()
    try:
        for chunk in chunks:
            connection.send(chunk)
    finally:
        connection_module._end_batch()


def test_fake_stream_offers_the_direct_path() -> None:
    assert isinstance(FakeDirectStream(), DirectStream)


async def test_batch_output_is_sent_at_its_end_without_the_writer() -> None:
    stream = FakeDirectStream()
    connection = make_connection(stream)  # no writer task at all
    in_batch(connection, b"one", b"two")
    assert bytes(stream.received) == b"onetwo"
    assert stream.direct_sends == 1  # one send for the whole batch
    assert connection.bytes_sent == 6
    assert not connection._out


async def test_output_outside_a_batch_goes_to_the_writer(nursery: trio.Nursery) -> None:
    stream = FakeDirectStream()
    connection = make_connection(stream)
    nursery.start_soon(connection._writer)
    connection.send(b"heart")
    connection.send(b"beat")
    assert not stream.received
    await trio.testing.wait_all_tasks_blocked()
    assert bytes(stream.received) == b"heartbeat"
    assert stream.direct_sends == 1  # the writer, too, tries a direct send first


async def test_what_the_socket_does_not_take_follows_in_order(nursery: trio.Nursery) -> None:
    stream = FakeDirectStream()
    connection = make_connection(stream)
    nursery.start_soon(connection._writer)
    in_batch(connection, b"a" * 10)
    stream.room = 4
    stream.gate = trio.Event()  # the peer stops reading
    in_batch(connection, b"b" * 10)
    assert bytes(stream.received) == b"a" * 10 + b"b" * 4
    await trio.testing.wait_all_tasks_blocked()
    assert stream.sending  # the writer holds the other 6 bytes of b
    in_batch(connection, b"c" * 5)  # must queue behind the writer, not go directly
    connection.send(b"d" * 3)
    stream.room = 1 << 30
    stream.gate.set()
    await connection._flush_output()
    assert bytes(stream.received) == b"a" * 10 + b"b" * 10 + b"c" * 5 + b"d" * 3
    in_batch(connection, b"e")  # the writer is idle again: direct once more
    assert bytes(stream.received).endswith(b"de")


async def test_big_output_that_would_block_is_finished_by_the_writer(
    nursery: trio.Nursery,
) -> None:
    stream = FakeDirectStream()
    connection = make_connection(stream)
    nursery.start_soon(connection._writer)
    stream.room = 1000
    chunks = [n.to_bytes(2, "big") * 2048 for n in range(600)]  # above the delivery high-water mark
    in_batch(connection, *chunks)
    assert not connection.writable
    assert len(stream.received) == 0  # over the mark the writer does it all
    await connection._flush_output()
    assert bytes(stream.received) == b"".join(chunks)
    assert connection.writable


async def test_a_failed_direct_send_leaves_the_output_to_the_writer() -> None:
    stream = FakeDirectStream()
    connection = make_connection(stream)
    stream.broken = True
    in_batch(connection, b"lost?")
    assert connection._out == [b"lost?"]  # kept for the writer, which reports the error
    assert connection._wake.is_set()
    stream.broken = False
    in_batch(connection, b"more")  # no more direct sends on this connection
    assert connection._out == [b"lost?", b"more"]
    assert not stream.received


async def test_a_stream_without_the_direct_path_uses_the_writer(nursery: trio.Nursery) -> None:
    client, server = trio.testing.memory_stream_pair()
    connection = make_connection(server)
    nursery.start_soon(connection._writer)
    in_batch(connection, b"via", b"writer")
    await connection._flush_output()
    assert await client.receive_some(100) == b"viawriter"


async def test_one_batch_sends_for_every_connection_it_gave_output() -> None:
    streams = [FakeDirectStream() for _ in range(3)]
    connections = [make_connection(stream) for stream in streams]
    connection_module._start_batch()
    try:
        for number, connection in enumerate(connections):
            connection.send(b"deliver-%d;" % number)
        connections[0].send(b"again")
    finally:
        connection_module._end_batch()
    assert [bytes(s.received) for s in streams] == [
        b"deliver-0;again",
        b"deliver-1;",
        b"deliver-2;",
    ]
    assert [s.direct_sends for s in streams] == [1, 1, 1]
