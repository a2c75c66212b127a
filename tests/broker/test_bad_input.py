"""Bad input over raw sockets: the right close code on the wire, and the broker stays up.

Rules for this file (as trio-websocket's network tests keep them):

* every socket operation is bounded (``raw_amqp.TIMEOUT``); no test can hang;
* every test asserts on what came back on the wire (a close method's reply code, the
  protocol header, or the connection being closed), then that the broker process is alive,
  that a connection opened *before* the bad input still works and that a fresh pika
  connection is served;
* the expected codes are RabbitMQ's; each case cites the rule it follows (``rabbit_reader``,
  ``rabbit_channel``, ``rabbit_command_assembler`` or the AMQP 0-9-1 spec, "spec x.y").
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from pamqp import commands
from support import raw_amqp as raw
from support.broker_process import BrokerProcess, broker_process

from plugmq.amqp import constants as C
from plugmq.amqp.frames import build_frame


def pika_connection(broker: BrokerProcess) -> pika.BlockingConnection:
    """A pika connection to ``broker`` (one attempt)."""
    return pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", broker.port, connection_attempts=1)
    )


def round_trip(connection: pika.BlockingConnection) -> None:
    """Declare, publish and get one message: the connection really works."""
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"still serving")
    assert channel.basic_get(queue, auto_ack=True)[2] == b"still serving"
    channel.close()


@pytest.fixture
def bystander(shared_broker: BrokerProcess) -> Iterator[pika.BlockingConnection]:
    """A pika connection opened before the bad input; the test checks it is unaffected."""
    connection = pika_connection(shared_broker)
    yield connection
    if connection.is_open:
        connection.close()


def assert_unharmed(broker: BrokerProcess, bystander: pika.BlockingConnection | None) -> None:
    """The broker runs, ``bystander`` still works, and a fresh pika connection is served."""
    assert broker.alive, broker.tail()
    if bystander is not None:
        round_trip(bystander)
    with pika_connection(broker) as fresh:
        round_trip(fresh)


def assert_closed_with(sock: socket.socket, code: int, class_id: int = -1, method_id: int = -1):
    """Read the connection.close, check its code (and method when given), then the EOF."""
    close = raw.expect_close(sock)
    assert close.channel == 0, close
    assert close.reply_code == code, close
    assert close.reply_text.startswith(C.REPLY_NAMES[code]), close
    if class_id >= 0:
        assert (close.class_id, close.method_id) == (class_id, method_id), close
    raw.wait_closed(sock, raw.TIMEOUT)
    return close


@pytest.fixture
def opened(shared_broker: BrokerProcess) -> Iterator[socket.socket]:
    """A raw connection after connection.open-ok, with channel 1 open."""
    sock = raw.open_raw(shared_broker.port)
    raw.open_channel(sock, 1)
    yield sock
    sock.close()


# -- protocol header -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"AMQP\x00\x00\x09\x00",
        b"AMQP\x01\x01\x00\x0a",
        b"HTTP/1.1",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        bytes(range(8)),
    ],
)
def test_wrong_protocol_header_gets_ours_and_a_close(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, header: bytes
) -> None:
    # Spec 4.2.2: "If the server cannot support the protocol specified in the protocol header,
    # it MUST respond with a valid protocol header and then close the socket connection."
    # rabbit_reader:refuse_connection writes <<"AMQP",0,0,9,1>> and closes.
    with raw.connect(shared_broker.port) as sock:
        sock.sendall(header)
        assert raw.read_exactly(sock, 8) == C.PROTOCOL_HEADER
        raw.wait_closed(sock, raw.TIMEOUT)
    assert_unharmed(shared_broker, bystander)


# -- framing ---------------------------------------------------------------------------------


def test_garbage_after_handshake_is_a_frame_error(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    # 'h','el' = type 0x68, channel 0x656c, size b"lo, " = 1.8 GB > frame_max: rabbit_reader
    # fatal_frame_error(frame_too_large) -> frame_error (501).
    opened.sendall(b"hello, this is not an AMQP frame at all" * 4)
    assert_closed_with(opened, C.FRAME_ERROR)
    assert_unharmed(shared_broker, bystander)


def test_truncated_frame_then_disconnect(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    frame = raw.pamqp_frame.marshal(commands.Queue.Declare(queue="half"), 1)
    opened.sendall(frame[: len(frame) // 2])
    opened.shutdown(socket.SHUT_WR)
    # Nothing to answer: the broker drops its side without a close method and no reply.
    assert opened.recv(65536) == b""
    assert_unharmed(shared_broker, bystander)


def test_frame_larger_than_negotiated_frame_max_is_a_frame_error(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # Spec 4.2.3 (frame-max is a hard limit) and rabbit_reader's frame_too_large: 501. The
    # client negotiated 4096, far below the broker's 131072, and the frame fits the latter.
    # A payload of exactly 4096 bytes would pass (RabbitMQ's FRAME_SIZE_FUDGE); one more not.
    with raw.connect(shared_broker.port) as sock:
        raw.handshake(sock, frame_max=4096)
        raw.open_channel(sock, 1)
        raw.send_frame(sock, C.FRAME_BODY, 1, b"x" * 4097)
        close = assert_closed_with(sock, C.FRAME_ERROR)
        assert "4097 bytes exceeds frame_max 4096" in close.reply_text
    assert_unharmed(shared_broker, bystander)


def test_frame_size_over_the_broker_limit_is_refused_from_the_header(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    # A 4 GB size is refused as soon as the 7-byte header is in: nothing more is buffered.
    opened.sendall(struct.pack(">BHI", C.FRAME_BODY, 1, 0xFFFFFFFF) + b"x")
    assert_closed_with(opened, C.FRAME_ERROR)
    assert_unharmed(shared_broker, bystander)


def test_bad_frame_end_octet_is_a_frame_error(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    # rabbit_reader: fatal_frame_error({invalid_frame_end_marker, E}) -> 501.
    frame = raw.pamqp_frame.marshal(commands.Basic.Qos(prefetch_count=1), 1)
    opened.sendall(frame[:-1] + b"\x00")
    close = assert_closed_with(opened, C.FRAME_ERROR)
    assert "frame-end" in close.reply_text
    assert_unharmed(shared_broker, bystander)


@pytest.mark.parametrize("frame_type", [0, 4, 5, 9, 255])
def test_unknown_frame_type_is_a_frame_error(
    shared_broker: BrokerProcess,
    bystander: pika.BlockingConnection,
    opened: socket.socket,
    frame_type: int,
) -> None:
    # rabbit_command_assembler:analyze_frame returns error -> frame_error(unknown_frame): 501.
    raw.send_frame(opened, frame_type, 1, b"\x00\x01\x02")
    assert_closed_with(opened, C.FRAME_ERROR)
    assert_unharmed(shared_broker, bystander)


def test_heartbeat_on_a_channel_other_than_zero_is_an_unexpected_frame(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    # Spec 4.2.7: heartbeats live on channel 0; rabbit_reader:handle_frame answers a heartbeat
    # on another channel with unexpected_frame (505).
    raw.send_frame(opened, C.FRAME_HEARTBEAT, 1, b"")
    assert_closed_with(opened, C.UNEXPECTED_FRAME)
    assert_unharmed(shared_broker, bystander)


# -- channels --------------------------------------------------------------------------------


def test_method_on_an_unopened_channel_is_a_channel_error(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    # rabbit_channel in state starting: "expected 'channel.open'" channel_error (504), hard.
    raw.send_method(opened, 7, commands.Queue.Declare(queue="nowhere"))
    assert_closed_with(opened, C.CHANNEL_ERROR, 50, 10)
    assert_unharmed(shared_broker, bystander)


def test_content_frame_on_an_unopened_channel_is_an_unexpected_frame(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    # rabbit_command_assembler of a new channel expects a method: "expected method frame,
    # got non method frame instead" is unexpected_frame (505).
    raw.send_frame(opened, C.FRAME_BODY, 7, b"body")
    assert_closed_with(opened, C.UNEXPECTED_FRAME)
    assert_unharmed(shared_broker, bystander)


def test_channel_open_twice_is_a_channel_error(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    # rabbit_channel: "second 'channel.open' seen" channel_error (504), a connection error.
    raw.send_method(opened, 1, commands.Channel.Open())
    assert_closed_with(opened, C.CHANNEL_ERROR, 20, 10)
    assert_unharmed(shared_broker, bystander)


def test_non_connection_method_on_channel_zero_is_a_channel_error(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    # rabbit_reader:handle_method0: "unexpected method in connection state running" (504).
    raw.send_method(opened, 0, commands.Basic.Qos(prefetch_count=1))
    assert_closed_with(opened, C.CHANNEL_ERROR, 60, 10)
    assert_unharmed(shared_broker, bystander)


def test_channel_number_above_channel_max_is_not_allowed(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # rabbit_reader:create_channel: "number of channels opened (N) has reached the negotiated
    # channel_max (M)" is not_allowed (530), a connection error.
    with raw.connect(shared_broker.port) as sock:
        raw.handshake(sock, channel_max=10)
        for number in range(1, 11):
            raw.open_channel(sock, number)
        raw.send_method(sock, 11, commands.Channel.Open())
        close = assert_closed_with(sock, C.NOT_ALLOWED)
        assert "channel_max" in close.reply_text
    assert_unharmed(shared_broker, bystander)


def test_channel_flood_is_bounded_by_channel_max(broker: BrokerProcess) -> None:
    # Thousands of channel.open pipelined in one write: the broker opens exactly channel_max
    # (2047, RabbitMQ's default) and refuses the next with 530; memory stays small.
    with raw.connect(broker.port, timeout=15) as sock:
        tune = raw.handshake(sock)
        assert tune.channel_max == 2047
        opens = b"".join(
            raw.pamqp_frame.marshal(commands.Channel.Open(), number) for number in range(1, 5001)
        )
        sock.sendall(opens)
        opened = set()
        while True:
            channel, method = raw.read_method(sock)
            if isinstance(method, commands.Connection.Close):
                break
            assert isinstance(method, commands.Channel.OpenOk), method
            opened.add(channel)
        assert opened == set(range(1, 2048))
        assert method.reply_code == C.NOT_ALLOWED, method
        assert "channel_max" in method.reply_text
    assert_unharmed(broker, None)


# -- methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize("class_id, method_id", [(99, 1), (60, 999), (0xFFFF, 0xFFFF)])
def test_unknown_class_or_method_is_not_implemented(
    shared_broker: BrokerProcess,
    bystander: pika.BlockingConnection,
    opened: socket.socket,
    class_id: int,
    method_id: int,
) -> None:
    # Spec: not-implemented (540) "The client tried to use functionality that is not
    # implemented in the server."
    raw.send_frame(opened, C.FRAME_METHOD, 1, struct.pack(">HH", class_id, method_id))
    assert_closed_with(opened, C.NOT_IMPLEMENTED, class_id, method_id)
    assert_unharmed(shared_broker, bystander)


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack(">HHH", 50, 10, 0) + b"\x20short",  # queue.declare, name cut short
        struct.pack(">HH", 60, 40) + b"\x00",  # basic.publish without its fields
        struct.pack(">HH", 60, 80) + b"\x00\x00",  # basic.ack without its tag
        struct.pack(">HHH", 50, 10, 0) + b"\x01q\x00" + b"\x00\x00\x00\x05\x01kZ\x00\x00",
    ],
    ids=["queue.declare", "basic.publish", "basic.ack", "bad-table-type"],
)
def test_undecodable_method_fields_are_a_frame_error(
    shared_broker: BrokerProcess,
    bystander: pika.BlockingConnection,
    opened: socket.socket,
    payload: bytes,
) -> None:
    # rabbit_framing's generated decode_method_fields falls through to
    # rabbit_misc:frame_error(Name, Bin): frame_error (501) "cannot decode ...".
    raw.send_frame(opened, C.FRAME_METHOD, 1, payload)
    close = assert_closed_with(opened, C.FRAME_ERROR)
    assert "cannot decode" in close.reply_text
    assert_unharmed(shared_broker, bystander)


def test_deeply_nested_table_is_a_frame_error_not_a_crash(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection, opened: socket.socket
) -> None:
    inner = b""
    for _ in range(5000):
        inner = b"\x01kF" + struct.pack(">I", len(inner)) + inner
    payload = struct.pack(">HHH", 50, 10, 0) + b"\x01q\x00" + struct.pack(">I", len(inner))
    raw.send_frame(opened, C.FRAME_METHOD, 1, payload + inner)
    assert_closed_with(opened, C.FRAME_ERROR, 50, 10)
    assert_unharmed(shared_broker, bystander)


# -- content ---------------------------------------------------------------------------------


def publish(exchange: str = "", key: str = "q") -> bytes:
    """A basic.publish method frame on channel 1."""
    return raw.pamqp_frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=key), 1)


def header(body_size: int, class_id: int = C.BASIC) -> bytes:
    """A content header frame on channel 1 with no properties."""
    return build_frame(C.FRAME_HEADER, 1, struct.pack(">HHQH", class_id, 0, body_size, 0))


def body(data: bytes) -> bytes:
    """A content body frame on channel 1."""
    return build_frame(C.FRAME_BODY, 1, data)


QOS = raw.pamqp_frame.marshal(commands.Basic.Qos(prefetch_count=1), 1)

# rabbit_command_assembler: every out-of-place content frame is unexpected_frame (505):
# "expected method frame, got non method frame instead", "expected content header for class
# 60, got non content header frame instead", "expected content body, got non content body
# frame instead", "body frame too large" (hard errors, spec 4.2.6).
CONTENT_CASES = {
    "header-without-publish": header(3),
    "body-without-header": body(b"abc"),
    "body-after-publish-without-header": publish() + body(b"abc"),
    "method-while-expecting-header": publish() + QOS,
    "method-while-expecting-body": publish() + header(3) + QOS,
    "second-header-while-expecting-body": publish() + header(3) + header(3),
    "header-of-another-class": publish() + header(3, class_id=C.QUEUE),
    "body-larger-than-announced": publish() + header(3) + body(b"abcd"),
}


@pytest.mark.parametrize("frames", CONTENT_CASES.values(), ids=CONTENT_CASES.keys())
def test_out_of_place_content_is_an_unexpected_frame(
    shared_broker: BrokerProcess,
    bystander: pika.BlockingConnection,
    opened: socket.socket,
    frames: bytes,
) -> None:
    opened.sendall(frames)
    assert_closed_with(opened, C.UNEXPECTED_FRAME)
    assert_unharmed(shared_broker, bystander)


# -- handshake -------------------------------------------------------------------------------


def test_method_out_of_order_in_the_handshake_is_command_invalid(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # RabbitMQ raises channel_error "unexpected method in connection state starting" and,
    # the connection not being open yet, closes the socket silently after 3 s
    # (rabbit_reader:handle_exception, SILENT_CLOSE_DELAY). plugmq tells the client why at
    # once, with command-invalid (503, "method not allowed at this point").
    with raw.connect(shared_broker.port) as sock:
        raw.start(sock)
        raw.send_method(sock, 0, commands.Connection.Open(virtual_host="/"))
        assert_closed_with(sock, C.COMMAND_INVALID, 10, 40)
    with raw.connect(shared_broker.port) as sock:
        raw.start(sock)
        raw.send_start_ok(sock, raw.plain_response("guest", "guest"))
        raw.read_method(sock, commands.Connection.Tune)
        raw.send_method(sock, 0, commands.Connection.Open(virtual_host="/"))  # no tune-ok
        assert_closed_with(sock, C.COMMAND_INVALID, 10, 40)
    assert_unharmed(shared_broker, bystander)


@pytest.mark.parametrize(
    "mechanism, response",
    [
        ("PLAIN", raw.plain_response("guest", "wrong")),
        ("PLAIN", raw.plain_response("nobody", "guest")),
        ("PLAIN", "no separators"),
        ("AMQPLAIN", raw.amqplain_response("guest", "wrong")),
        ("AMQPLAIN", b"\x05LOGINS\x00\x00\x00\x02\xff\xfe\x08PASSWORDS\x00\x00\x00\x01x"),
        ("AMQPLAIN", b"\xff garbage"),
    ],
    ids=[
        "plain-password",
        "plain-user",
        "plain-malformed",
        "amqplain-password",
        "amqplain-not-utf8",
        "amqplain-malformed",
    ],
)
def test_failed_login_is_access_refused(
    shared_broker: BrokerProcess,
    bystander: pika.BlockingConnection,
    mechanism: str,
    response: str | bytes,
) -> None:
    # rabbit_reader:auth_fail: access_refused (403) sent as connection.close to a client with
    # the authentication_failure_close capability, naming connection.start-ok (10, 11).
    with raw.connect(shared_broker.port) as sock:
        raw.start(sock)
        raw.send_start_ok(sock, response, mechanism)
        assert_closed_with(sock, C.ACCESS_REFUSED, 10, 11)
    assert_unharmed(shared_broker, bystander)


def test_unknown_mechanism_is_command_invalid(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # rabbit_reader:auth_mechanism_to_module: command_invalid (503) "unknown authentication
    # mechanism 'X'".
    with raw.connect(shared_broker.port) as sock:
        start = raw.start(sock)
        assert "CRAM-MD5" not in start.mechanisms
        raw.send_start_ok(sock, "whatever", "CRAM-MD5")
        close = assert_closed_with(sock, C.COMMAND_INVALID, 10, 11)
        assert "CRAM-MD5" in close.reply_text
    assert_unharmed(shared_broker, bystander)


def test_unknown_vhost_is_not_allowed(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # rabbit_reader (state opening): not_allowed (530) "vhost ... not found", sent as
    # connection.close naming connection.open (10, 40).
    with raw.connect(shared_broker.port) as sock:
        raw.start(sock)
        raw.send_start_ok(sock, raw.plain_response("guest", "guest"))
        tune = raw.read_method(sock, commands.Connection.Tune)[1]
        raw.send_method(sock, 0, commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        raw.send_method(sock, 0, commands.Connection.Open(virtual_host="/no-such-vhost"))
        close = assert_closed_with(sock, C.NOT_ALLOWED, 10, 40)
        assert "/no-such-vhost" in close.reply_text
    assert_unharmed(shared_broker, bystander)


def test_frame_max_above_the_offer_is_not_allowed(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # rabbit_reader:validate_negotiated_integer_value: not_allowed (530) for a frame_max above
    # the server's, sent as connection.close while tuning (10, 31).
    with raw.connect(shared_broker.port) as sock:
        raw.start(sock)
        raw.send_start_ok(sock, raw.plain_response("guest", "guest"))
        tune = raw.read_method(sock, commands.Connection.Tune)[1]
        raw.send_method(
            sock, 0, commands.Connection.TuneOk(tune.channel_max, tune.frame_max + 1, 0)
        )
        assert_closed_with(sock, C.NOT_ALLOWED, 10, 31)
    assert_unharmed(shared_broker, bystander)


# -- resource exhaustion ---------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` (kB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def send_until_blocked(sock: socket.socket, frames: bytes, limit: int, stall: float) -> int:
    """Send ``frames`` repeatedly until ``limit`` bytes or a ``stall``-second blocked send."""
    sock.settimeout(stall)
    sent = 0
    view = memoryview(frames)
    while sent < limit:
        try:
            sent += sock.send(view[sent % len(frames) :])
        except TimeoutError:
            break
    return sent


def test_peer_that_never_reads_gets_backpressure_not_unbounded_buffering(
    tmp_path: Path,
) -> None:
    # A no-ack consumer on the same connection as a fast publisher, whose socket is never
    # read. The broker must stop reading from that peer (as RabbitMQ's credit flow / memory
    # alarm end up blocking it) instead of queueing its publishes without limit.
    broker = broker_process(tmp_path, "--store", "memory").start()
    try:
        with pika_connection(broker) as bystander:
            round_trip(bystander)
            before = rss_kib(broker.process.pid)
            sock = raw.open_raw(broker.port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.open_channel(sock, 1)
            raw.send_method(sock, 1, commands.Queue.Declare(queue="flood", exclusive=True))
            raw.read_method(sock, commands.Queue.DeclareOk)
            raw.send_method(sock, 1, commands.Basic.Consume(queue="flood", no_ack=True))
            raw.read_method(sock, commands.Basic.ConsumeOk)
            message = publish(key="flood") + header(65536) + body(b"m" * 65536)
            batch = message * 64  # 4 MiB per pass
            sent = send_until_blocked(sock, batch, limit=1 << 30, stall=2.0)
            grown_mib = (rss_kib(broker.process.pid) - before) / 1024
            round_trip(bystander)  # other connections keep working meanwhile
            sock.close()
        assert sent < 256 << 20, f"broker read {sent >> 20} MiB from a peer that never reads"
        assert grown_mib < 150, f"broker grew by {grown_mib:.0f} MiB"
        assert_unharmed(broker, None)
    finally:
        broker.stop()


def test_silent_peer_after_heartbeat_negotiation_is_dropped(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # Spec 4.2.7 / rabbit_heartbeat: a peer silent for two heartbeat intervals is dead and its
    # socket is closed (RabbitMQ logs "missed heartbeats from client", sends no close method).
    with raw.open_raw(shared_broker.port, heartbeat=1) as sock:
        began = time.monotonic()
        raw.wait_closed(sock, 8.0)
        assert 1.5 <= time.monotonic() - began <= 6.0
    assert_unharmed(shared_broker, bystander)


def test_slowloris_is_dropped_after_the_handshake_timeout(
    shared_broker: BrokerProcess, bystander: pika.BlockingConnection
) -> None:
    # RabbitMQ's handshake_timeout (10 s): a TCP connection that never completes the AMQP
    # handshake is closed, so idle sockets cannot exhaust the broker.
    with raw.connect(shared_broker.port) as sock:
        elapsed = raw.wait_closed(sock, 15.0)
        assert 9.0 <= elapsed <= 15.0, elapsed
    assert_unharmed(shared_broker, bystander)
