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
