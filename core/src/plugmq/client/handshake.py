"""Connection negotiation: protocol header, start/start-ok, tune/tune-ok, open/open-ok.

Runs on a freshly dialed stream before the connection's reader task exists, so it reads frames
itself. The outcome is a :class:`Tuning` plus the parser, which may already hold bytes the
broker sent after open-ok (connection.blocked, for instance).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

import trio
from pamqp import commands

from plugmq.amqp import constants as C
from plugmq.amqp.frames import Frame, FrameParser
from plugmq.amqp.methods import decode_method, encode_method
from plugmq.client.errors import AMQPClientError, ConnectionClosed
from plugmq.client.urls import BrokerURL

CAPABILITIES = {
    "publisher_confirms": True,
    "consumer_cancel_notify": True,
    "basic.nack": True,
    "connection.blocked": True,
    "authentication_failure_close": True,
    "exchange_exchange_bindings": True,
    "per_consumer_qos": True,
}


@dataclass(frozen=True, slots=True)
class Limits:
    """What the client asks for; None accepts the broker's value, 0 means "no limit/off"."""

    heartbeat: int | None = None
    frame_max: int | None = None
    channel_max: int | None = None
    connection_name: str | None = None


@dataclass(slots=True)
class Tuning:
    """The negotiated connection parameters and what the broker told about itself."""

    heartbeat: int
    frame_max: int
    channel_max: int
    server_properties: dict[str, Any]
    parser: FrameParser
    pending: list[Frame] = field(default_factory=list)


def client_properties(name: str | None) -> dict[str, Any]:
    """The client-properties table sent in connection.start-ok."""
    properties: dict[str, Any] = {
        "product": "plugmq-client",
        "version": _version(),
        "platform": f"Python {platform.python_version()}",
        "information": "plugmq trio AMQP 0-9-1 client",
        "capabilities": dict(CAPABILITIES),
    }
    if name:
        properties["connection_name"] = name
    return properties


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("plugmq")
    except PackageNotFoundError:
        return "0"


def negotiate(client: int | None, server: int) -> int:
    """Pick a limit: 0 means unlimited on either side, otherwise the smaller wins.

    ``client`` None accepts the broker's proposal.
    """
    if client is None:
        return server
    if client == 0 or server == 0:
        return max(client, server)
    return min(client, server)


def negotiate_heartbeat(client: int | None, server: int) -> int:
    """Heartbeat interval: None takes the broker's, 0 turns heartbeats off (as pika does)."""
    if client is None:
        return server
    if client == 0:
        return 0
    return min(client, server) if server else client


class _Reader:
    """Reads channel-0 methods during the handshake."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.parser = FrameParser(C.FRAME_MIN_SIZE * 32)
        self.pending: list[Frame] = []

    async def method(self, *expected: type) -> Any:
        """The next connection method; connection.close becomes :class:`ConnectionClosed`."""
        while True:
            while self.pending:
                frame_type, channel, payload = self.pending.pop(0)
                if frame_type == C.FRAME_METHOD and channel == 0:
                    return _check(decode_method(payload)[1], expected)
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionClosed(0, "broker closed the transport during the handshake")
            if data.startswith(b"AMQP"):
                raise AMQPClientError(f"broker refused the protocol version, offers {data!r}")
            self.pending += self.parser.feed(data)


def _check(method: Any, expected: tuple[type, ...]) -> Any:
    if isinstance(method, commands.Connection.Close):
        raise ConnectionClosed(
            method.reply_code, method.reply_text, method.class_id, method.method_id
        )
    if not isinstance(method, expected):
        raise AMQPClientError(f"unexpected {method.name} during the handshake")
    return method


async def handshake(stream: trio.abc.Stream, url: BrokerURL, limits: Limits) -> Tuning:
    """Negotiate an AMQP connection on ``stream`` to ``url``'s vhost as ``url``'s user.

    Raises :class:`ConnectionClosed` when the broker refuses (403 bad credentials, 530 vhost
    not allowed) and :class:`AMQPClientError` for a broker that does not speak PLAIN.
    """
    await stream.send_all(C.PROTOCOL_HEADER)
    reader = _Reader(stream)
    start = await reader.method(commands.Connection.Start)
    if b"PLAIN" not in start.mechanisms.encode().split():
        raise AMQPClientError(f"broker offers no PLAIN authentication ({start.mechanisms})")
    start_ok = commands.Connection.StartOk(
        client_properties=client_properties(limits.connection_name),
        mechanism="PLAIN",
        response=f"\0{url.username}\0{url.password}",
    )
    await stream.send_all(encode_method(0, start_ok))
    tune = await reader.method(commands.Connection.Tune)
    tuning = _tune(tune, limits, start.server_properties, reader)
    await stream.send_all(
        encode_method(
            0, commands.Connection.TuneOk(tuning.channel_max, tuning.frame_max, tuning.heartbeat)
        )
        + encode_method(0, commands.Connection.Open(virtual_host=url.vhost))
    )
    await reader.method(commands.Connection.OpenOk)
    tuning.pending = reader.pending
    return tuning


def _tune(
    tune: commands.Connection.Tune,
    limits: Limits,
    server_properties: dict[str, Any],
    reader: _Reader,
) -> Tuning:
    frame_max = negotiate(limits.frame_max, tune.frame_max) or 131072
    if frame_max < C.FRAME_MIN_SIZE:
        raise AMQPClientError(f"frame_max {frame_max} is below the minimum {C.FRAME_MIN_SIZE}")
    reader.parser.frame_max = frame_max
    return Tuning(
        heartbeat=negotiate_heartbeat(limits.heartbeat, tune.heartbeat),
        frame_max=frame_max,
        channel_max=negotiate(limits.channel_max, tune.channel_max) or 65535,
        server_properties=dict(server_properties or {}),
        parser=reader.parser,
    )
