"""Connection-level behaviour that real clients rely on, matching RabbitMQ 3.10+ (issue 17).

Each section names the RabbitMQ behaviour (or the AMQP 0-9-1 rule RabbitMQ follows) that it
checks, with a real client where one can produce the case (pika, aio-pika, plugmq.client)
and raw frames (``support.raw_amqp``) where none can. Rules as in ``test_bad_input.py``:
every socket operation is bounded, every test asserts what came back on the wire and that
the broker still serves others afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pika
import pika.exceptions
import pytest
import trio
from pamqp import commands
from support import raw_amqp as raw
from support.admin_cli import cli_ok
from support.broker_process import BrokerProcess, broker_process

from plugmq.amqp import constants as C
from plugmq.amqp.frames import build_frame
from plugmq.client import connect

TIMEOUT = 10.0


def pika_connection(
    broker: BrokerProcess, host: str = "127.0.0.1", **options
) -> pika.BlockingConnection:
    """A pika connection to ``broker`` (one attempt)."""
    return pika.BlockingConnection(
        pika.ConnectionParameters(host, broker.port, connection_attempts=1, **options)
    )


def round_trip(connection: pika.BlockingConnection, body: bytes = b"still serving") -> bytes:
    """Declare, publish and get one message on a new channel; return what came back."""
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, body)
    got = channel.basic_get(queue, auto_ack=True)[2]
    channel.close()
    return got


@pytest.fixture
def bystander(shared_broker: BrokerProcess) -> Iterator[pika.BlockingConnection]:
    """A pika connection opened before the test's own; it must be unaffected."""
    connection = pika_connection(shared_broker)
    yield connection
    if connection.is_open:
        connection.close()


def assert_unharmed(broker: BrokerProcess, bystander: pika.BlockingConnection) -> None:
    """The broker runs and both the bystander and a fresh connection are served."""
    assert broker.alive, broker.tail()
    assert round_trip(bystander) == b"still serving"
    with pika_connection(broker) as fresh:
        assert round_trip(fresh) == b"still serving"


# -- raw helpers ------------------------------------------------------------------------------


def declare_queue(sock: socket.socket, channel: int = 1) -> str:
    """A server-named exclusive queue declared on ``channel``."""
    raw.send_method(sock, channel, commands.Queue.Declare(queue="", exclusive=True))
    return raw.read_method(sock, commands.Queue.DeclareOk)[1].queue


def publish_frames(exchange: str, key: str, body: bytes, split: int, channel: int = 1) -> bytes:
    """basic.publish, its header and ``body`` cut into payloads of ``split`` bytes."""
    header = struct.pack(">HHQH", C.BASIC, 0, len(body), 0)
    frames = [
        raw.pamqp_frame.marshal(
            commands.Basic.Publish(exchange=exchange, routing_key=key), channel
        ),
        build_frame(C.FRAME_HEADER, channel, header),
    ]
    frames += [
        build_frame(C.FRAME_BODY, channel, body[start : start + split])
        for start in range(0, len(body), split)
    ]
    return b"".join(frames)


def get_body(sock: socket.socket, queue: str, channel: int = 1) -> bytes:
    """basic.get (no-ack) of one message; its body reassembled from the broker's frames."""
    raw.send_method(sock, channel, commands.Basic.Get(queue=queue, no_ack=True))
    raw.read_method(sock, commands.Basic.GetOk)
    _, header = raw.read_frame(sock)
    body = b""
    while len(body) < header.body_size:
        _, frame = raw.read_frame(sock)
        body += frame.value
    return body


# -- 1. connection.update-secret --------------------------------------------------------------


def test_update_secret_with_the_valid_secret_is_answered_and_the_connection_goes_on(
    shared_broker: BrokerProcess,
) -> None:
    # RabbitMQ extension (rabbit_reader handle_method0 connection.update_secret, 3.8+):
    # update-secret-ok, and the connection and its channels keep working.
    with pika_connection(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        connection.update_secret("guest", "token refreshed")  # returns on update-secret-ok
        channel.basic_publish("", queue, b"after the refresh")
        assert channel.basic_get(queue, auto_ack=True)[2] == b"after the refresh"
    events = [e for e in shared_broker.events() if e.get("event") == "secret_updated"]
    assert events and events[-1]["reason"] == "token refreshed"


def test_update_secret_follows_a_password_change(shared_broker: BrokerProcess) -> None:
    # A rotated password: the connection opened with the old one moves to the new one
    # without reconnecting; the old one no longer passes (530, as a refused secret).
    user = f"rotator-{uuid.uuid4().hex[:8]}"
    cli_ok(shared_broker.url, "user", "add", user, "first")
    cli_ok(shared_broker.url, "permissions", "set", user, ".*", ".*", ".*")
    credentials = pika.PlainCredentials(user, "first")
    with pika_connection(shared_broker, credentials=credentials) as connection:
        cli_ok(shared_broker.url, "user", "passwd", user, "second")
        connection.update_secret("second", "password rotated")
        assert round_trip(connection) == b"still serving"
    connection = pika_connection(shared_broker, credentials=pika.PlainCredentials(user, "second"))
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        connection.update_secret("first", "stale secret")
    assert closed.value.reply_code == C.NOT_ALLOWED


def test_update_secret_with_a_wrong_secret_closes_the_connection_with_530(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # rabbit_reader: a refused secret is protocol_error(not_allowed, "New secret was
    # refused by one of the backends") -> connection.close 530 for method 10.70. (RabbitMQ's
    # internal user database does not check the secret; plugmq checks it as at login.)
    connection = pika_connection(shared_broker)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        connection.update_secret("not the password", "token refreshed")
    assert closed.value.reply_code == C.NOT_ALLOWED
    assert closed.value.reply_text.startswith("NOT_ALLOWED - New secret was refused")
    assert not connection.is_open
    assert_unharmed(shared_broker, bystander)


def test_update_secret_close_names_the_method(shared_broker: BrokerProcess) -> None:
    sock = raw.open_raw(shared_broker.port)
    with sock:
        raw.send_method(sock, 0, commands.Connection.UpdateSecret("wrong", "rotation"))
        close = raw.expect_close(sock)
        assert (close.channel, close.reply_code) == (0, C.NOT_ALLOWED)
        assert (close.class_id, close.method_id) == (10, 70)
        raw.wait_closed(sock, raw.TIMEOUT)


# -- 2. frame size ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [4087, 4088, 4089, 4096, 3 * 4096 + 5, 100_000])
def test_pika_bodies_around_a_small_frame_max_round_trip(
    shared_broker: BrokerProcess, size: int
) -> None:
    # pika splits bodies at frame_max - 8; sizes at and around the frame boundaries.
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    with pika_connection(shared_broker, frame_max=4096) as connection:
        assert round_trip(connection, body) == body


def test_body_frames_of_exactly_frame_max_are_accepted(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # AMQPStorm-style splitting at frame_max (not frame_max - 8): RabbitMQ accepts payloads
    # up to frame_max (rabbit_reader FRAME_SIZE_FUDGE, 3.x and 4.x); one byte more is 501.
    with raw.connect(shared_broker.port) as sock:
        raw.handshake(sock, frame_max=4096)
        raw.open_channel(sock, 1)
        queue = declare_queue(sock)
        body = bytes(range(256)) * 48 + b"tail"  # three frames of 4096, one of 4
        sock.sendall(publish_frames("", queue, body, split=4096))
        assert get_body(sock, queue) == body
        sock.sendall(publish_frames("", queue, b"y" * 4097, split=4097))
        close = raw.expect_close(sock)
        assert (close.channel, close.reply_code) == (0, C.FRAME_ERROR)
        assert "4097 bytes exceeds frame_max 4096" in close.reply_text
        raw.wait_closed(sock, raw.TIMEOUT)
    assert_unharmed(shared_broker, bystander)


# -- 5. a closing channel discards frames -----------------------------------------------------


def test_content_racing_a_channel_error_is_discarded(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # Spec 2.3.5 / rabbit_channel in state closing: after channel.close the broker discards
    # every frame on the channel but close/close-ok. The publishes that follow the failing
    # one, already on the wire, must not turn into 505 UNEXPECTED_FRAME for the connection.
    with raw.open_raw(shared_broker.port) as sock:
        raw.open_channel(sock, 1)
        raw.open_channel(sock, 2)
        queue = declare_queue(sock, channel=2)
        racing = b"".join(
            publish_frames("no-such-exchange", "k", b"z" * 10_000, split=4000) for _ in range(5)
        )
        sock.sendall(racing)
        close = raw.expect_close(sock)  # answers channel.close-ok
        assert (close.channel, close.reply_code) == (1, C.NOT_FOUND), close
        assert "no-such-exchange" in close.reply_text
        sock.sendall(publish_frames("", queue, b"on channel 2", split=4000, channel=2))
        assert get_body(sock, queue, channel=2) == b"on channel 2"
        raw.open_channel(sock, 1)  # the number is free again after close-ok
        sock.sendall(publish_frames("", queue, b"on channel 1", split=4000))
        assert get_body(sock, queue) == b"on channel 1"
    assert_unharmed(shared_broker, bystander)


def test_body_of_a_refused_header_is_discarded(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # The channel error comes from the content header (body larger than max_message_size,
    # 406 as RabbitMQ 3.8+): the body frames in flight are dropped, the connection lives.
    with raw.open_raw(shared_broker.port) as sock:
        raw.open_channel(sock, 1)
        huge = struct.pack(">HHQH", C.BASIC, 0, 1 << 40, 0)
        sock.sendall(
            raw.pamqp_frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1)
            + build_frame(C.FRAME_HEADER, 1, huge)
            + build_frame(C.FRAME_BODY, 1, b"b" * 4000) * 3
        )
        close = raw.expect_close(sock)
        assert (close.channel, close.reply_code) == (1, C.PRECONDITION_FAILED), close
        raw.open_channel(sock, 2)
        queue = declare_queue(sock, channel=2)
        sock.sendall(publish_frames("", queue, b"fine", split=4000, channel=2))
        assert get_body(sock, queue, channel=2) == b"fine"
    assert_unharmed(shared_broker, bystander)


def test_pika_publisher_racing_a_channel_error_keeps_its_connection(
    shared_broker: BrokerProcess,
) -> None:
    # pika publishes without waiting; the broker closes the channel on the first publish
    # (404 no exchange) while the rest are on the wire. Only that channel closes.
    with pika_connection(shared_broker) as connection:
        doomed = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            # pika raises in whichever call first sees the close: a later publish, or the
            # declare's round trip at the latest.
            for n in range(50):
                doomed.basic_publish("no-such-exchange", "k", b"m" * (3000 + n))
            doomed.queue_declare("", exclusive=True)
        assert closed.value.reply_code == C.NOT_FOUND
        assert connection.is_open
        assert round_trip(connection) == b"still serving"


# -- 6. graceful connection close -------------------------------------------------------------


def assert_clean_end(sock: socket.socket) -> None:
    """The broker's side ends with a FIN (EOF), not a reset, within the timeout."""
    sock.settimeout(raw.TIMEOUT)
    while data := sock.recv(65536):  # ConnectionResetError here is the failure
        assert data, data


def test_frames_after_connection_close_do_not_reset_the_close_ok(
    shared_broker: BrokerProcess,
) -> None:
    # Spec 2.2.4 and rabbit_reader (state closed: input is read and dropped until the
    # client closes): the client pipelined ~100 KB after its close; it gets close-ok, then
    # EOF. Closing with that input unread would make the kernel send a reset instead.
    with raw.open_raw(shared_broker.port) as sock:
        raw.open_channel(sock, 1)
        close = raw.pamqp_frame.marshal(commands.Connection.Close(200, "bye", 0, 0), 0)
        after = publish_frames("", "anything", b"p" * 100_000, split=4000)
        sock.sendall(close + after)
        channel, method = raw.read_method(sock)
        assert (channel, method.name) == (0, "Connection.CloseOk")
        assert_clean_end(sock)


def test_broker_close_is_followed_by_a_clean_end(shared_broker: BrokerProcess) -> None:
    # The broker closes (505: content on channel 0); the client answers close-ok with more
    # data right behind it (~100 KB). It sees EOF after the close handshake, not a reset.
    heartbeats = build_frame(C.FRAME_HEARTBEAT, 0, b"") * 12_500
    with raw.open_raw(shared_broker.port) as sock:
        sock.sendall(build_frame(C.FRAME_BODY, 0, b"x"))
        channel, close = raw.read_method(sock, commands.Connection.Close)
        assert (channel, close.reply_code) == (0, C.UNEXPECTED_FRAME)
        sock.sendall(raw.pamqp_frame.marshal(commands.Connection.CloseOk(), 0) + heartbeats)
        assert_clean_end(sock)


def test_aio_pika_rpc_style_open_close_cycles(
    shared_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # aio-pika's RPC pattern, one short-lived connection per call, as RPC clients do it: a
    # server consumer answers to reply_to, the caller consumes its exclusive reply queue,
    # then the connection is closed with both consumers still active. Every close must end
    # cleanly: no error from aiormq, each connection closed by its client, none lost.
    cycles = 30
    events_before = len(shared_broker.events())

    async def call(url: str, n: int) -> bytes:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            server_queue = await channel.declare_queue("", exclusive=True)
            reply_queue = await channel.declare_queue("", exclusive=True)

            async def serve(request: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with request.process():
                    await channel.default_exchange.publish(
                        aio_pika.Message(request.body.upper()), routing_key=request.reply_to
                    )

            replies: asyncio.Queue[bytes] = asyncio.Queue()

            async def collect(reply: aio_pika.abc.AbstractIncomingMessage) -> None:
                replies.put_nowait(reply.body)

            await server_queue.consume(serve)
            await reply_queue.consume(collect, no_ack=True)
            await channel.default_exchange.publish(
                aio_pika.Message(f"request {n}".encode(), reply_to=reply_queue.name),
                routing_key=server_queue.name,
            )
            return await replies.get()

    async def main() -> list[bytes]:
        async with asyncio.timeout(60):
            return [await call(shared_broker.url, n) for n in range(cycles)]

    with caplog.at_level(logging.WARNING):
        replies = asyncio.run(main())
    assert replies == [f"REQUEST {n}".encode() for n in range(cycles)]
    problems = [r for r in caplog.records if r.name.startswith(("aiormq", "aio_pika"))]
    assert not problems, [r.getMessage() for r in problems]
    events = shared_broker.events()[events_before:]
    closed = [e for e in events if e.get("event") == "connection_closed_by_client"]
    lost = [e for e in events if e.get("event") in ("connection_lost", "connection_reset")]
    assert len(closed) >= cycles
    assert not lost, lost


# -- 8. older protocol headers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "header, version",
    [
        (b"AMQP\x01\x01\x00\x09", (0, 9)),  # 0-9 (txAMQP with the 0-9 spec)
        (b"AMQP\x01\x01\x08\x00", (8, 0)),  # 0-8 as most 0-8 clients send it
        (b"AMQP\x01\x01\x09\x01", (8, 0)),  # 0-8 as its spec prints it (py-amqplib)
    ],
    ids=["0-9", "0-8", "0-8-spec"],
)
def test_older_protocol_header_is_served_in_0_9_1(
    shared_broker: BrokerProcess, header: bytes, version: tuple[int, int]
) -> None:
    # RabbitMQ 3.x rabbit_reader:handshake/2 accepts these and announces the version asked
    # for in connection.start; the methods that follow are 0-9-1's (as RabbitMQ treats 0-9).
    with raw.connect(shared_broker.port) as sock:
        start = raw.start(sock, header)
        assert (start.version_major, start.version_minor) == version
        raw.send_start_ok(sock, raw.plain_response("guest", "guest"))
        tune = raw.read_method(sock, commands.Connection.Tune)[1]
        raw.send_method(sock, 0, commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        raw.send_method(sock, 0, commands.Connection.Open(virtual_host="/"))
        raw.read_method(sock, commands.Connection.OpenOk)
        raw.open_channel(sock, 1)
        queue = declare_queue(sock)
        sock.sendall(publish_frames("", queue, b"from an older client", split=4000))
        assert get_body(sock, queue) == b"from an older client"
        raw.send_method(sock, 0, commands.Connection.Close(200, "done", 0, 0))
        raw.read_method(sock, commands.Connection.CloseOk)


# -- 9. IPv6 ----------------------------------------------------------------------------------


def ipv6_loopback() -> bool:
    """True when this machine can bind ::1."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(
    not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)"
)


@pytest.fixture
def default_interface_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker started without --interface: it listens on every address, both families."""
    process = broker_process(tmp_path, "--store", "memory", interface=None).start()
    yield process
    process.stop()


@needs_ipv6
def test_default_listens_on_ipv4_and_ipv6_on_one_port(
    default_interface_broker: BrokerProcess,
) -> None:
    # RabbitMQ listens on 0.0.0.0 and :: by default (rabbit_networking, tcp_listeners 5672).
    broker = default_interface_broker
    active = [e for e in broker.events() if e.get("event") == "broker_active"][-1]
    tcp = sorted(a for a in active["listening"] if a.startswith("tcp://"))
    assert tcp == sorted([f"tcp://0.0.0.0:{broker.port}", f"tcp://[::]:{broker.port}"])
    with pika_connection(broker, host="::1") as over_ipv6:
        assert round_trip(over_ipv6, b"over ::1") == b"over ::1"
    with pika_connection(broker, host="127.0.0.1") as over_ipv4:
        assert round_trip(over_ipv4, b"over 127.0.0.1") == b"over 127.0.0.1"
    opened = [e for e in broker.events() if e.get("event") == "connection_opened"]
    assert any(e["peer"].startswith("::1") or e["peer"].startswith("[::1]") for e in opened)


@needs_ipv6
async def test_plugmq_client_over_ipv6(default_interface_broker: BrokerProcess) -> None:
    url = f"amqp://guest:guest@[::1]:{default_interface_broker.port}/"
    name = f"ipv6.{uuid.uuid4().hex[:8]}"
    with trio.fail_after(TIMEOUT):
        async with connect(url) as conn, conn.channel() as ch:
            await ch.queue_declare(name, exclusive=True)
            await ch.publish("", name, b"plugmq.client over ::1")
            message = await ch.get(name, no_ack=True)
            assert message is not None and message.body == b"plugmq.client over ::1"


@needs_ipv6
def test_interface_narrows_the_listener(tmp_path: Path) -> None:
    # --interface ::1 (as RabbitMQ's tcp_listeners.1 = ::1:5672): IPv4 is not served.
    broker = broker_process(tmp_path, "--store", "memory", interface="::1").start()
    try:
        active = [e for e in broker.events() if e.get("event") == "broker_active"][-1]
        assert [a for a in active["listening"] if a.startswith("tcp://")] == [
            f"tcp://[::1]:{broker.port}"
        ]
        with pika_connection(broker, host="::1") as over_ipv6:
            assert round_trip(over_ipv6) == b"still serving"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", broker.port), timeout=raw.TIMEOUT).close()
    finally:
        broker.stop()
