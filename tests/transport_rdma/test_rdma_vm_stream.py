"""trio's stream conformance checks over real RDMA (Soft-RoCE in the lab VM)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from rdma_lab import needs_rdma, rdma_stream_pair

from plugmq_transport_rdma.framing import payload_size
from plugmq_transport_rdma.listener import RdmaListener
from plugmq_transport_rdma.settings import RingSettings
from plugmq_transport_rdma.stream import RdmaStream

pytestmark = [needs_rdma, pytest.mark.timeout(600)]
SMALL = RingSettings(buffers=4, buffer_size=64)


@pytest.fixture
async def listeners(rdma_ip: str) -> AsyncIterator[tuple[RdmaListener, RdmaListener]]:
    """A listener with the default ring and one with a 4 x 64-byte ring (for clogging)."""
    default = RdmaListener.bind(rdma_ip, 0, RingSettings(), 16)
    small = RdmaListener.bind(rdma_ip, 0, SMALL, 16)
    yield default, small
    await default.aclose()
    await small.aclose()


async def clog(stream: RdmaStream) -> None:
    """Send single-buffer chunks until credits are gone (checked twice: headers return some)."""
    while True:
        with trio.move_on_after(1.0) as scope:
            await stream.wait_send_all_might_not_block()
        if scope.cancelled_caught:
            return
        await stream.send_all(b"c" * payload_size(SMALL.buffer_size))


async def test_conformance_over_rxe(
    listeners: tuple[RdmaListener, RdmaListener], rdma_ip: str
) -> None:
    default, small = listeners

    async def maker() -> tuple[RdmaStream, RdmaStream]:
        return await rdma_stream_pair(default, rdma_ip)

    async def clogged() -> tuple[RdmaStream, RdmaStream]:
        s, r = await rdma_stream_pair(small, rdma_ip)
        for _ in range(2):
            await clog(s)
            await clog(r)
        return s, r

    with trio.fail_after(540):
        await trio.testing.check_half_closeable_stream(maker, clogged)


async def test_multi_buffer_write_over_rxe(
    listeners: tuple[RdmaListener, RdmaListener], rdma_ip: str
) -> None:
    default, _ = listeners
    client, server = await rdma_stream_pair(default, rdma_ip)
    data = bytes(range(256)) * 1024  # 256 KiB: 17 buffers of 16 KiB
    got = bytearray()

    async def read() -> None:
        while len(got) < len(data):
            got.extend(await server.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await client.send_all(data)
    assert got == data
    await client.aclose()
    assert await server.receive_some() == b""
    await server.aclose()


async def test_bidirectional_mixed_sizes_over_rxe(
    listeners: tuple[RdmaListener, RdmaListener], rdma_ip: str
) -> None:
    """Like an AMQP client: one task writes frames of every size while another reads."""
    default, _ = listeners
    client, server = await rdma_stream_pair(default, rdma_ip)
    rng = random.Random(7)
    frames = [rng.randbytes(rng.choice([7, 100, 4000, 16372, 16373, 40000])) for _ in range(400)]
    payload = b"".join(frames)

    async def write(stream: RdmaStream) -> None:
        for frame in frames:
            await stream.send_all(frame)

    async def read(stream: RdmaStream, into: bytearray) -> None:
        while len(into) < len(payload):
            into.extend(await stream.receive_some(rng.choice([1000, 65536])))

    got_server, got_client = bytearray(), bytearray()
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, client)
            nursery.start_soon(write, server)
            nursery.start_soon(read, server, got_server)
            nursery.start_soon(read, client, got_client)
    assert got_server == payload and got_client == payload
    await client.aclose()
    await server.aclose()
