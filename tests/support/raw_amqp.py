"""Raw AMQP 0-9-1 over a plain socket, for tests that send what no client library would.

Every call is bounded: sockets carry a timeout (``TIMEOUT`` unless told otherwise), so a broker
that never answers fails the test instead of hanging it. Frames are built with
:func:`plugmq.amqp.frames.build_frame` or pamqp and what comes back is decoded with pamqp, so
the assertions rest on an independent decoder.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any, NamedTuple

from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.common import FieldTable

from plugmq.amqp import constants as C
from plugmq.amqp.frames import build_frame

#: Seconds any single socket operation may take.
TIMEOUT = 5.0

#: What pika announces; ``authentication_failure_close`` asks for a 403 connection.close on a
#: failed login (RabbitMQ only sends it to clients with this capability).
CLIENT_PROPERTIES: FieldTable = {
    "product": "plugmq raw test client",
    "capabilities": {"authentication_failure_close": True, "consumer_cancel_notify": True},
}


class Close(NamedTuple):
    """A connection.close or channel.close as received."""

    channel: int
    reply_code: int
    reply_text: str
    class_id: int
    method_id: int


def connect(port: int, timeout: float = TIMEOUT) -> socket.socket:
    """A TCP connection to the broker on loopback, with ``timeout`` on every operation."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_exactly(sock: socket.socket, count: int) -> bytes:
    """``count`` bytes; ``EOFError`` if the broker closes first."""
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, Any]:
    """The next frame as ``(channel, pamqp value)`` (a method, header, body or heartbeat)."""
    header = read_exactly(sock, 7)
    size = struct.unpack(">I", header[3:])[0]
    data = header + read_exactly(sock, size + 1)
    consumed, channel, value = pamqp_frame.unmarshal(data)
    assert consumed == len(data), f"pamqp consumed {consumed} of {len(data)} bytes"
    return channel, value


def read_method(sock: socket.socket, expected: type | None = None) -> tuple[int, Any]:
    """The next method frame, skipping heartbeats; assert its type when ``expected`` is given."""
    while True:
        channel, value = read_frame(sock)
        if value.name == "Heartbeat":
            continue
        if expected is not None:
            assert isinstance(value, expected), f"expected {expected.__name__}, got {value!r}"
        return channel, value


def send_method(sock: socket.socket, channel: int, method: Any) -> None:
    """Send one method frame built by pamqp."""
    sock.sendall(pamqp_frame.marshal(method, channel))


def send_frame(sock: socket.socket, frame_type: int, channel: int, payload: bytes) -> None:
    """Send one frame around an arbitrary payload."""
    sock.sendall(build_frame(frame_type, channel, payload))


def start(sock: socket.socket, header: bytes = C.PROTOCOL_HEADER) -> commands.Connection.Start:
    """Send the protocol header and read connection.start."""
    sock.sendall(header)
    return read_method(sock, commands.Connection.Start)[1]


def plain_response(user: str, password: str) -> str:
    """A SASL PLAIN response."""
    return f"\x00{user}\x00{password}"


def amqplain_response(user: str, password: str) -> bytes:
    """An AMQPLAIN response: a field table without its length prefix."""
    return b"".join(
        bytes((len(key),)) + key + b"S" + struct.pack(">I", len(value)) + value
        for key, value in ((b"LOGIN", user.encode()), (b"PASSWORD", password.encode()))
    )


def send_start_ok(sock: socket.socket, response: str | bytes, mechanism: str = "PLAIN") -> None:
    """Send connection.start-ok (pamqp wants a ``str`` response; bytes are passed as latin-1)."""
    if isinstance(response, bytes):
        response = response.decode("latin-1")
    send_method(
        sock,
        0,
        commands.Connection.StartOk(
            client_properties=CLIENT_PROPERTIES, mechanism=mechanism, response=response
        ),
    )


def handshake(
    sock: socket.socket,
    user: str = "guest",
    password: str = "guest",
    vhost: str = "/",
    heartbeat: int = 0,
    channel_max: int = 0,
    frame_max: int = 0,
) -> commands.Connection.Tune:
    """Header, start-ok (PLAIN), tune-ok, open, open-ok; return the broker's connection.tune.

    A zero ``channel_max``/``frame_max`` takes the broker's offer.
    """
    start(sock)
    send_start_ok(sock, plain_response(user, password))
    tune = read_method(sock, commands.Connection.Tune)[1]
    send_method(
        sock,
        0,
        commands.Connection.TuneOk(
            channel_max=channel_max or tune.channel_max,
            frame_max=frame_max or tune.frame_max,
            heartbeat=heartbeat,
        ),
    )
    send_method(sock, 0, commands.Connection.Open(virtual_host=vhost))
    read_method(sock, commands.Connection.OpenOk)
    return tune


def open_raw(
    port: int, user: str = "guest", password: str = "guest", heartbeat: int = 0
) -> socket.socket:
    """A socket on which the handshake is done (after connection.open-ok)."""
    sock = connect(port)
    try:
        handshake(sock, user, password, heartbeat=heartbeat)
    except BaseException:
        sock.close()
        raise
    return sock


def open_channel(sock: socket.socket, number: int) -> None:
    """channel.open and wait for channel.open-ok on ``number``."""
    send_method(sock, number, commands.Channel.Open())
    channel, _ = read_method(sock, commands.Channel.OpenOk)
    assert channel == number


def expect_close(sock: socket.socket) -> Close:
    """Read until a connection.close or channel.close arrives; answer it with close-ok.

    Other frames (heartbeats, deliveries) are skipped. ``EOFError`` if the broker drops the
    connection without a close method.
    """
    while True:
        channel, value = read_frame(sock)
        if isinstance(value, commands.Connection.Close):
            send_method(sock, 0, commands.Connection.CloseOk())
            break
        if isinstance(value, commands.Channel.Close):
            send_method(sock, channel, commands.Channel.CloseOk())
            break
    return Close(channel, value.reply_code, value.reply_text, value.class_id, value.method_id)


def wait_closed(sock: socket.socket, limit: float) -> float:
    """Seconds until the broker closes the connection, reading (and dropping) what it sends.

    Raises ``TimeoutError`` if it is still open after ``limit`` seconds.
    """
    began = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - began < limit:
        try:
            if not sock.recv(65536):
                return time.monotonic() - began
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - began
    raise TimeoutError(f"connection still open after {limit} s")
