"""The ZooKeeper session, bridged from kazoo's threads to trio.

kazoo runs its own threads and calls listeners and watches from them. Those callbacks never touch
broker state: they only *poke* the trio side through a :class:`trio.lowlevel.TrioToken`
(``trio.from_thread.run_sync``), which wakes the strategy; the strategy then reads ZooKeeper again
(from a worker thread) and decides. Blocking kazoo calls run in ``trio.to_thread``.

Error handling: a lost connection (``SUSPENDED``) or an expired session (``LOST``) sets
:attr:`ZKSession.connected` to False and fires :attr:`ZKSession.lost` at once; a master fences on
that event (it can no longer prove it is master). kazoo reconnects by itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
import trio
from kazoo.client import KazooClient, KazooState
from kazoo.handlers.threading import KazooTimeoutError

from plugmq.config import ConfigError

log = structlog.get_logger("plugmq.ha_zk")
T = TypeVar("T")


class ZKSession:
    """One kazoo client for the broker's life; :meth:`changed` wakes on any ZooKeeper news."""

    def __init__(self, hosts: str, timeout: float) -> None:
        self.hosts = hosts
        self.timeout = timeout
        self.client = KazooClient(hosts=hosts, timeout=timeout)
        self.connected = False
        #: Set (in trio) when the connection or the session is lost; replaced on reconnect.
        self.lost = trio.Event()
        self._changed = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None

    async def start(self, connect_timeout: float) -> None:
        """Connect, or raise :class:`ConfigError` saying the ensemble is unreachable."""
        self._token = trio.lowlevel.current_trio_token()
        self.client.add_listener(self._state_changed)
        try:
            await trio.to_thread.run_sync(functools.partial(self.client.start, connect_timeout))
        except KazooTimeoutError:
            await trio.to_thread.run_sync(self.client.close)
            raise ConfigError(
                f"cannot reach ZooKeeper at {self.hosts} within {connect_timeout:g} s: start the "
                "ensemble or fix --zk-address (the broker does not start without it: it could "
                "not know whether another broker is master)"
            ) from None
        self.connected = True
        log.info("ha_zk.zk_connected", zk=self.hosts, session_timeout=self.timeout)

    async def stop(self) -> None:
        """Close the session (our ephemeral nodes vanish at once)."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self.client.stop)
            await trio.to_thread.run_sync(self.client.close)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking kazoo call in a worker thread."""
        return await trio.to_thread.run_sync(functools.partial(function, *args, **kwargs))

    async def changed(self, timeout: float) -> None:
        """Wait until something was poked or ``timeout`` passed (a safety net for lost news)."""
        with trio.move_on_after(timeout):
            await self._changed.wait()
        self._changed = trio.Event()

    def watch(self, *_: Any) -> None:
        """A kazoo watch callback (any thread): wake the strategy."""
        self._from_thread(self._changed.set)

    def _state_changed(self, state: str) -> None:
        """kazoo's connection listener (kazoo's thread): record and wake, nothing else."""
        self._from_thread(self._on_state, state)

    def _on_state(self, state: str) -> None:
        connected = state == KazooState.CONNECTED
        if self.connected and not connected:
            self.lost.set()
        elif connected and not self.connected:
            self.lost = trio.Event()
        self.connected = connected
        log.info("ha_zk.zk_state", state=str(state))
        self._changed.set()

    def _from_thread(self, function: Callable[..., Any], *args: Any) -> None:
        """Schedule ``function`` in trio without waiting: kazoo's connection thread calls
        listeners inline, and a blocked listener would stop its pings (session expiry)."""
        if self._token is None:
            return
        try:
            self._token.run_sync_soon(function, *args)
        except trio.RunFinishedError:
            return  # the broker has stopped; nothing left to wake
