"""The TCP transport's streams: trio socket streams plus the non-blocking direct path."""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from plugmq.broker.connection import BUSY_READ, RECEIVE_SIZE, Connection
from plugmq.transport import DirectStream
from plugmq_transport_tcp.stream import TCPStream
from plugmq_transport_tcp.tcp import TCPListenerFactory


async def tcp_pair() -> tuple[TCPStream, trio.SocketStream]:
    """A broker-side stream accepted by the plugin's listener, and its client."""
    factory = TCPListenerFactory("127.0.0.1", 0)
    (listener,) = await factory.open()
    port = listener.socket.getsockname()[1]
    assert factory.describe(listener) == f"tcp://127.0.0.1:{port}"
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    await listener.aclose()
    return server, client


async def test_accepted_streams_offer_the_direct_path() -> None:
    server, client = await tcp_pair()
    assert isinstance(server, DirectStream)
    assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    await server.send_all(b"ping")  # the trio stream calls still work
    assert await client.receive_some(10) == b"ping"
    await client.send_all(b"pong")
    assert await server.receive_some(10) == b"pong"


async def test_try_receive_none_then_data_then_end() -> None:
    server, client = await tcp_pair()
    assert server.try_receive(100) is None
    await client.send_all(b"hello")
    await server.wait_readable()
    assert server.try_receive(100) == b"hello"
    await client.aclose()
    await server.wait_readable()
    assert server.try_receive(100) == b""


async def test_try_send_takes_what_fits_then_nothing() -> None:
    server, client = await tcp_pair()
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    chunk = b"x" * 65536
    total = 0
    while sent := server.try_send(chunk):
        total += sent
    assert server.try_send(b"y") == 0
    received = bytearray()
    while len(received) < total:
        received += await client.receive_some(65536)
    assert received == b"x" * total


async def test_a_closed_stream_raises_closed() -> None:
    server, _client = await tcp_pair()
    await server.aclose()
    with pytest.raises(trio.ClosedResourceError):
        server.try_send(b"x")
    with pytest.raises(trio.ClosedResourceError):
        server.try_receive(10)
    with pytest.raises(trio.ClosedResourceError):
        await server.wait_readable()


async def test_closing_wakes_a_task_waiting_for_data(nursery: trio.Nursery) -> None:
    server, _client = await tcp_pair()
    failures: list[BaseException] = []

    async def wait() -> None:
        try:
            await server.wait_readable()
        except trio.ClosedResourceError as error:
            failures.append(error)

    nursery.start_soon(wait)
    await trio.testing.wait_all_tasks_blocked()
    await server.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert len(failures) == 1


async def test_a_reset_peer_is_broken() -> None:
    server, client = await tcp_pair()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.aclose()  # linger 0: the peer sends RST
    await server.wait_readable()
    with pytest.raises(trio.BrokenResourceError):
        server.try_receive(10)
    with pytest.raises(trio.BrokenResourceError):
        server.try_send(b"x")


async def test_connection_reads_through_the_direct_path() -> None:
    server, client = await tcp_pair()
    connection = Connection(SimpleNamespace(channel_max=2047), server, "test")  # type: ignore[arg-type]
    await client.send_all(b"small")
    assert await connection._receive() == b"small"
    assert not connection._busy_read
    big = bytes(range(256)) * (RECEIVE_SIZE // 256)
    await client.send_all(big + b"tail")
    received = b""
    while len(received) < len(big) + 4:
        received += await connection._receive()
    assert received == big + b"tail"
    assert len(big) >= BUSY_READ
    await client.aclose()
    assert await connection._receive() == b""


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
async def test_every_address_means_both_families_on_one_port() -> None:
    # The default --interface '' (as RabbitMQ's default listeners): 0.0.0.0 and :: on the
    # same port even when the kernel picks it, the IPv6 socket IPv6-only.
    factory = TCPListenerFactory("", 0)
    listeners = await factory.open()
    try:
        port = listeners[0].socket.getsockname()[1]
        assert [factory.describe(listener) for listener in listeners] == [
            f"tcp://0.0.0.0:{port}",
            f"tcp://[::]:{port}",
        ]
        assert listeners[1].socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        for host in ("127.0.0.1", "::1"):
            client = await trio.open_tcp_stream(host, port)
            server = await listeners[":" in host].accept()  # [0] is IPv4, [1] IPv6
            await client.send_all(host.encode())
            assert await server.receive_some(100) == host.encode()
            await client.aclose()
            await server.aclose()
    finally:
        for listener in listeners:
            await listener.aclose()
