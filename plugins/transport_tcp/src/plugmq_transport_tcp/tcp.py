"""TCP listeners and dialer as trio streams."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import trio

from plugmq_transport_tcp.bind import open_listeners
from plugmq_transport_tcp.stream import TCPListener


class TCPListenerFactory:
    """Opens TCP listeners on an interface and port (``--interface``, ``--port``)."""

    name = "tcp"

    def __init__(self, host: str, port: int, backlog: int = 1024) -> None:
        self.host = host
        self.port = port
        self.backlog = backlog

    async def open(self) -> Sequence[TCPListener]:
        """Bind (``''``: every IPv4 and IPv6 address, one port); OSError names the address.

        Accepted connections are :class:`~plugmq_transport_tcp.stream.TCPStream` objects, whose
        non-blocking fast path (:class:`plugmq.transport.DirectStream`) the broker uses.
        """
        try:
            listeners = await open_listeners(self.host, self.port, self.backlog)
        except OSError as error:
            raise OSError(
                error.errno, f"cannot listen on {self.host or '*'}:{self.port}: {error.strerror}"
            ) from error
        for listener in listeners:
            listener.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return [TCPListener(listener) for listener in listeners]

    def describe(self, listener: trio.abc.Listener[trio.abc.Stream]) -> str:
        """``tcp://host:port`` of the bound socket (the real port when 0 was asked)."""
        host, port = listener.socket.getsockname()[:2]  # type: ignore[attr-defined]
        if ":" in host:
            host = f"[{host}]"
        return f"tcp://{host}:{port}"


class TCPDialer:
    """Opens client TCP connections for ``amqp://`` URLs."""

    async def dial(self, host: str, port: int) -> trio.abc.Stream:
        """Connect with TCP_NODELAY (AMQP's small frames must not wait for Nagle)."""
        stream = await trio.open_tcp_stream(host, port)
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stream
