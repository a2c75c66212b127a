"""Connections against a real broker: negotiation, failover, heartbeats, reconnects, close.

Faults are injected on the client's side of the socket through the pluggable dialer (a
``amqp+test://`` scheme whose streams the test can cut or mute), so the shared broker is
never disturbed.
"""

from __future__ import annotations

import socket

import pytest
import trio
from rabbitmq_node import RabbitMQNode

from plugmq.client import (
    ChannelClosed,
    ConnectionClosed,
    ConnectionFailed,
    connect,
    parse_url,
)

TIMEOUT = 20


class FaultyStream(trio.abc.Stream):
    """A TCP stream the test can cut (both directions) or mute (drop what arrives)."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.muted = False

    def cut(self) -> None:
        """Simulate the network dropping: shut the socket down."""
        self.inner.socket.shutdown(socket.SHUT_RDWR)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            data = await self.inner.receive_some(max_bytes)
            if not self.muted or not data:
                return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class FaultyDialer:
    """A Dialer recording the streams it opened."""

    def __init__(self) -> None:
        self.streams: list[FaultyStream] = []

    async def dial(self, host: str, port: int) -> trio.abc.Stream:
        stream = FaultyStream(await trio.open_tcp_stream(host, port))
        self.streams.append(stream)
        return stream


def _faulty_url(amqp_url: str) -> str:
    url = parse_url(amqp_url)
    return f"amqp+test://{url.username}:{url.password}@{url.host}:{url.port}/%2F"


async def test_negotiation_and_client_properties(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url, heartbeat=30, frame_max=65536) as conn:
            assert conn.is_connected
            assert conn.heartbeat == 30
            assert conn.frame_max == 65536
            assert 0 < conn.channel_max <= 65535
            assert "capabilities" in conn.server_properties
            assert not conn.blocked


async def test_failover_skips_a_dead_first_url(amqp_url: str, dead_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect([dead_url, amqp_url], connect_timeout=5) as conn:
            assert conn.url.port == parse_url(amqp_url).port
            async with conn.channel() as ch:
                assert (await ch.queue_declare("", exclusive=True)).name


async def test_all_urls_dead_raises_connection_failed(dead_url: str) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionFailed) as raised:
        async with connect([dead_url, dead_url], connect_timeout=2):
            pytest.fail("connected to a dead port")
    assert len(raised.value.errors) == 2
    assert "guest:***@" in str(raised.value)  # URLs named, passwords masked


async def test_bad_password_is_reported_with_403(amqp_url: str) -> None:
    wrong = amqp_url.replace("guest:guest@", "guest:wrong@")
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionFailed) as raised:
        async with connect(wrong):
            pytest.fail("connected with a wrong password")
    [(_, error)] = raised.value.errors
    assert isinstance(error, ConnectionClosed) and error.reply_code == 403


async def test_unknown_vhost_is_refused(amqp_url: str) -> None:
    url = parse_url(amqp_url)
    missing = f"amqp://guest:guest@{url.host}:{url.port}/no-such-vhost"
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionFailed) as raised:
        async with connect(missing):
            pytest.fail("opened a missing vhost")
    [(_, error)] = raised.value.errors
    assert isinstance(error, ConnectionClosed) and error.reply_code in (402, 530)


async def test_unknown_scheme_fails_before_dialing() -> None:
    with pytest.raises(ValueError, match="amqp\\+nope"):
        async with connect("amqp+nope://127.0.0.1:1/"):
            pytest.fail("connected over an unknown scheme")


async def test_heartbeats_keep_an_idle_connection_alive(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url, heartbeat=1) as conn:
            assert conn.heartbeat == 1
            # Either side gives up after two silent intervals: both must be sending.
            await trio.sleep(3.5)
            assert conn.is_connected
            async with conn.channel() as ch:
                assert (await ch.queue_declare("", exclusive=True)).name


async def test_silent_broker_is_detected(amqp_url: str) -> None:
    dialer = FaultyDialer()
    with trio.fail_after(TIMEOUT):
        url = _faulty_url(amqp_url)
        async with connect(url, heartbeat=1, dialers={"amqp+test": dialer}) as conn:
            ch = await conn.open_channel()
            dialer.streams[0].muted = True
            start = trio.current_time()
            error = await conn.wait_disconnected()
            assert trio.current_time() - start >= 1.5
            assert "heartbeat" in error.reply_text
            with pytest.raises(ConnectionClosed):
                await ch.queue_declare("", exclusive=True)


async def test_lost_connection_without_reconnect_fails_calls(amqp_url: str) -> None:
    dialer = FaultyDialer()
    with trio.fail_after(TIMEOUT):
        async with connect(_faulty_url(amqp_url), dialers={"amqp+test": dialer}) as conn:
            async with conn.channel() as ch:
                queue = (await ch.queue_declare("", exclusive=True)).name
                async with ch.consume(queue) as consumer:
                    dialer.streams[0].cut()
                    with pytest.raises(ConnectionClosed):
                        await consumer.__anext__()
                with pytest.raises(ConnectionClosed):
                    await ch.publish("", queue, b"x")
            assert not conn.is_connected
            with pytest.raises(ConnectionClosed):
                await conn.open_channel()


async def test_reconnect_fails_over_to_the_next_url(amqp_url: str) -> None:
    dialer = FaultyDialer()
    urls = [_faulty_url(amqp_url), amqp_url]
    with trio.fail_after(TIMEOUT):
        async with connect(
            urls, reconnect=True, reconnect_delay=0.1, dialers={"amqp+test": dialer}
        ) as conn:
            assert conn.url.scheme == "amqp+test"
            ch = await conn.open_channel()
            dialer.streams[0].cut()
            await conn.wait_disconnected()
            await conn.wait_connected()
            assert conn.url.scheme == "amqp"
            with pytest.raises(ConnectionClosed):
                await ch.queue_declare("", exclusive=True)
            async with conn.channel() as fresh:
                assert (await fresh.queue_declare("", exclusive=True)).name


async def test_clean_close_on_leaving_the_block(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn:
            ch = await conn.open_channel()
        assert not conn.is_connected and not ch.is_open
        with pytest.raises(ConnectionClosed) as raised:
            await ch.queue_declare("", exclusive=True)
        assert raised.value.reply_code == 200


async def test_many_channels_and_channel_reuse(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn:
            channels = [await conn.open_channel() for _ in range(20)]
            assert len({ch.number for ch in channels}) == 20
            for ch in channels:
                await ch.close()
            async with conn.channel() as ch:
                await ch.queue_declare("", exclusive=True)


async def test_errors_from_the_block_propagate_bare(amqp_url: str, name: str) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ChannelClosed) as raised:
        async with connect(amqp_url) as conn, conn.channel() as ch:
            await ch.queue_declare(name, passive=True)
    assert raised.value.reply_code == 404


async def test_connection_blocked_pauses_publishers(rabbitmq_node: RabbitMQNode) -> None:
    """RabbitMQ-specific: a memory alarm (watermark 0) blocks publishing connections."""
    with trio.fail_after(60):
        async with connect(rabbitmq_node.url) as conn, conn.channel() as ch:
            queue = (await ch.queue_declare("", exclusive=True)).name
            await trio.to_thread.run_sync(rabbitmq_node.ctl, "set_vm_memory_high_watermark", "0")
            try:
                await ch.publish("", queue, b"first")  # RabbitMQ blocks on the next publish
                while not conn.blocked:
                    await trio.sleep(0.05)
                assert "memory" in (conn.blocked_reason or "")
                done = trio.Event()

                async def publish_while_blocked() -> None:
                    await ch.publish("", queue, b"second")
                    done.set()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(publish_while_blocked)
                    await trio.sleep(0.3)
                    assert not done.is_set()
                    await trio.to_thread.run_sync(
                        rabbitmq_node.ctl, "set_vm_memory_high_watermark", "0.4"
                    )
                    await conn.wait_unblocked()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(
                        rabbitmq_node.ctl, "set_vm_memory_high_watermark", "0.4"
                    )
            await ch.confirm_select()
            assert (await ch.queue_declare(queue, passive=True)).message_count == 2


async def test_broker_close_reaches_waiting_and_later_callers(rabbitmq_node: RabbitMQNode) -> None:
    """RabbitMQ-specific: rabbitmqctl close_all_connections sends 320 CONNECTION_FORCED."""
    with trio.fail_after(60):
        async with connect(rabbitmq_node.url) as conn, conn.channel() as ch:
            queue = (await ch.queue_declare("", exclusive=True)).name
            async with ch.consume(queue) as consumer:
                await trio.to_thread.run_sync(
                    rabbitmq_node.ctl, "close_all_connections", "test says bye"
                )
                with pytest.raises(ConnectionClosed) as waiting:
                    await consumer.__anext__()
            assert waiting.value.reply_code == 320
            assert "test says bye" in waiting.value.reply_text
            with pytest.raises(ConnectionClosed) as later:
                await ch.publish("", queue, b"x")
            assert later.value.reply_code == 320
