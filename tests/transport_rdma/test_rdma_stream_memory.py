"""The RDMA stream's protocol logic over the in-memory queue pair (runs on every host).

The in-memory pair fails any SEND that finds no posted receive buffer (an overrun), so these
tests prove the credit logic, not only the happy path. Real devices: ``make test-rdma``.
"""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from plugmq_transport_rdma.framing import payload_size
from plugmq_transport_rdma.memory import memory_pair
from plugmq_transport_rdma.stream import RdmaStream


async def stream_pair(
    buffers: int = 8, buffer_size: int = 256, peer_buffers: int | None = None
) -> tuple[RdmaStream, RdmaStream]:
    """A dialer/acceptor pair over in-memory queue pairs, HELLOs exchanged."""
    a, b = memory_pair(buffers, buffer_size, peer_buffers)
    dialer = RdmaStream(a, initiator=True, peer="a")
    acceptor = RdmaStream(b, initiator=False, peer="b")
    await acceptor.wait_established()
    await dialer.wait_established()
    return dialer, acceptor


async def clog(stream: RdmaStream) -> None:
    """Send until every credit is spent (send_all then blocks until the peer reads)."""
    while True:
        with trio.move_on_after(0.05) as scope:
            await stream.wait_send_all_might_not_block()
        if scope.cancelled_caught:
            return
        await stream.send_all(b"x" * payload_size(64))


async def clogged_pair() -> tuple[RdmaStream, RdmaStream]:
    """A pair clogged both ways (trio's checks flip the pair)."""
    s, r = await stream_pair(buffers=4, buffer_size=64)
    for _ in range(2):  # a second round spends credits the other side's headers returned
        await clog(s)
        await clog(r)
    return s, r


async def test_conformance_half_closeable() -> None:
    async def maker() -> tuple[RdmaStream, RdmaStream]:
        return await stream_pair()

    await trio.testing.check_half_closeable_stream(maker, clogged_pair)


async def test_conformance_tiny_ring_and_unequal_rings() -> None:
    async def maker() -> tuple[RdmaStream, RdmaStream]:
        return await stream_pair(buffers=2, buffer_size=64, peer_buffers=5)

    await trio.testing.check_two_way_stream(maker, None)


async def test_large_write_is_split_and_joined() -> None:
    s, r = await stream_pair(buffers=4, buffer_size=128)
    data = random.Random(1).randbytes(100_000)
    got = bytearray()

    async def reader() -> None:
        while len(got) < len(data):
            got.extend(await r.receive_some(7000))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await s.send_all(data)
    assert got == data
    assert s._qp.overruns == 0 and r._qp.overruns == 0  # type: ignore[attr-defined]


async def test_slow_reader_blocks_writer_without_overrun() -> None:
    s, r = await stream_pair(buffers=4, buffer_size=64)
    with trio.move_on_after(0.2) as scope:
        await s.send_all(b"y" * 10_000)
    assert scope.cancelled_caught, "the writer must wait for the reader's credits"
    assert s.credits()[0] <= 1
    assert await r.receive_some(5) == b"yyyyy"
    assert s._qp.overruns == 0  # type: ignore[attr-defined]


async def test_peer_disconnect_breaks_both_directions() -> None:
    s, r = await stream_pair()
    s._qp.close()  # the peer vanishes without a CLOSE message (kill -9)
    with pytest.raises(trio.BrokenResourceError, match="disconnected"):
        await r.receive_some(10)
    with pytest.raises(trio.BrokenResourceError):
        await r.send_all(b"x")
    await r.aclose()


async def test_aclose_delivers_pending_data_then_eof() -> None:
    s, r = await stream_pair()
    await s.send_all(b"last words")
    await s.aclose()
    assert await r.receive_some() == b"last words"
    assert await r.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError, match="peer closed"):
        await r.send_all(b"anyone?")


async def test_registered_bytes_reported() -> None:
    s, _ = await stream_pair(buffers=16, buffer_size=4096)
    assert s.registered_bytes == 2 * 16 * 4096
