"""The transport contract: how plugins hand the core trio streams.

A transport plugin returns :class:`ListenerFactory` objects from ``plugmq_listeners`` (server
side) and a :class:`Dialer` from ``plugmq_dialer`` (client side). The AMQP engine only ever
sees ``trio.abc.Stream`` objects, so TCP, TLS and RDMA are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import trio


@runtime_checkable
class ListenerFactory(Protocol):
    """Opens the listeners of one transport when the broker becomes active."""

    #: Transport name for logs (``"tcp"``, ``"rdma"``).
    name: str

    async def open(self) -> Sequence[trio.abc.Listener[trio.abc.Stream]]:
        """Bind and return listeners. Raise ``OSError`` (port in use...) to stop the broker."""
        ...

    def describe(self, listener: trio.abc.Listener[trio.abc.Stream]) -> str:
        """A printable address of ``listener`` for the start-up log (``tcp://0.0.0.0:5672``)."""
        ...


@runtime_checkable
class Dialer(Protocol):
    """Opens client streams for one URL scheme."""

    async def dial(self, host: str, port: int) -> trio.abc.Stream:
        """Connect to ``host:port``. Raise ``OSError`` when the peer cannot be reached."""
        ...


@runtime_checkable
class DirectStream(Protocol):
    """Optional capability of a stream: move bytes now, without a trip through the scheduler.

    A broker connection whose stream offers this sends its output straight from the task that
    produced it when the socket takes it at once, and reads as soon as the stream is readable
    without the extra checkpoint of ``receive_some``; whatever would block still goes through
    ``send_all`` (so a stream without this capability, like RDMA's, works unchanged).

    The caller must not call :meth:`try_send` while a ``send_all`` is running, nor
    :meth:`try_receive` while a ``receive_some`` is. Errors follow trio's stream contract:
    ``trio.BrokenResourceError`` when the peer is gone, ``trio.ClosedResourceError`` after
    this side closed the stream.
    """

    def try_send(self, data: bytes | memoryview) -> int:
        """Send as much of ``data`` as fits without waiting; the byte count (maybe 0)."""
        ...

    def try_receive(self, max_bytes: int) -> bytes | None:
        """Up to ``max_bytes`` bytes available now, ``b""`` at end of stream, None if none yet."""
        ...

    async def wait_readable(self) -> None:
        """Return once :meth:`try_receive` may find data (or the end of the stream)."""
        ...
