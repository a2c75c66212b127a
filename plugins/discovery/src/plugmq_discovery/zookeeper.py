"""ZooKeeper discovery: each master keeps an ephemeral node under the network path.

The node is ``<path>/<group>-<sequence>`` (sequential, so a new master of a group never waits
for its predecessor's node to expire) and holds the announcement as JSON. Every master watches
the path's children; for each group the node with the highest epoch counts, and a group whose
nodes are all gone (its master's session expired, or it stopped) is removed at once.

kazoo runs its own threads: its watches only *poke* the trio side (as ha_zk does), which reads
the path again from a worker thread. The path is also read every interval, in case a watch is
missed across a reconnection.

Error handling: an unreachable ensemble, at start or later, is logged
(``discovery_zk_unreachable``, ``discovery_zk_lost``) and retried every few seconds; the
broker keeps serving, and the peer set stays as it was last known (links keep following their
groups through client failover) until ZooKeeper answers again. A node whose data is not an
announcement is logged (``discovery_bad_node``, once per node) and ignored.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import structlog
import trio
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from plugmq.api import AnnouncementError, GroupAnnouncement
from plugmq_discovery.options import DiscoverySettings
from plugmq_discovery.table import newest

log = structlog.get_logger("plugmq.discovery")

CONNECT_TIMEOUT = 5.0
RETRY = 2.0
#: Failures of one ZooKeeper call that mean "try again later", not a bug.
_ZK_ERRORS = (KazooException, KazooTimeoutError, OSError)


class ZooKeeperDiscovery:
    """Register ``announce()`` under the path; hand the other groups to ``publish``."""

    name = "zookeeper"

    def __init__(
        self,
        settings: DiscoverySettings,
        announce: Callable[[], GroupAnnouncement],
        publish: Callable[[dict[str, GroupAnnouncement]], None],
    ) -> None:
        self.settings = settings
        self.announce = announce
        self.publish = publish
        self.node: str | None = None
        self._written: bytes = b""
        #: Nodes already reported as not being announcements.
        self._bad: set[str] = set()
        self._changed = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None

    async def run(self) -> None:
        """Connect (retrying), register and watch until cancelled; close the session at the end
        (the node vanishes at once, so peers drop this group without waiting for expiry)."""
        self._token = trio.lowlevel.current_trio_token()
        while True:
            client = await self._connect()
            try:
                await self._serve(client)
            except _ZK_ERRORS as error:
                log.warning("discovery_zk_lost", zk=self.settings.zk_address, error=repr(error))
            finally:
                self.node = None
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_close, client)
            await trio.sleep(RETRY)

    async def _connect(self) -> KazooClient:
        attempts = 0
        while True:
            attempts += 1
            client = KazooClient(hosts=self.settings.zk_address, timeout=max(CONNECT_TIMEOUT, 4.0))
            try:
                await trio.to_thread.run_sync(functools.partial(client.start, CONNECT_TIMEOUT))
            except _ZK_ERRORS as error:
                await trio.to_thread.run_sync(_close, client)
                log.error(
                    "discovery_zk_unreachable",
                    zk=self.settings.zk_address,
                    attempts=attempts,
                    error=str(error) or type(error).__name__,
                    detail="this master is not announced and sees no other group until "
                    "ZooKeeper answers; the broker keeps serving",
                )
                await trio.sleep(RETRY)
                continue
            client.add_listener(self._state_changed)
            log.info("discovery_zk_connected", zk=self.settings.zk_address)
            return client

    async def _serve(self, client: KazooClient) -> None:
        await _in_thread(client.ensure_path, self.settings.zk_path)
        while True:
            await self._register(client)
            await self._read(client)
            self._changed = trio.Event()
            with trio.move_on_after(self.settings.interval):
                await self._changed.wait()
            if client.state != KazooState.CONNECTED:
                raise KazooException(f"session {client.state.lower()}")

    async def _register(self, client: KazooClient) -> None:
        """Create our node (again, after a lost session) or update its data if it changed."""
        data = json.dumps(self.announce().to_dict(), separators=(",", ":")).encode()
        if self.node is not None and await _in_thread(client.exists, self.node) is None:
            log.warning("discovery_zk_node_lost", node=self.node)
            self.node = None
        if self.node is None:
            # The name only has to be unique and readable: the group is read from the data.
            prefix = f"{self.settings.zk_path}/{quote(self.announce().group, safe='')}-"
            self.node = await _in_thread(client.create, prefix, data, ephemeral=True, sequence=True)
            self._written = data
            log.info("discovery_zk_registered", node=self.node)
        elif data != self._written:
            await _in_thread(client.set, self.node, data)
            self._written = data

    async def _read(self, client: KazooClient) -> None:
        path = self.settings.zk_path
        children = await _in_thread(client.get_children, path, watch=self._poke)
        announcements = []
        for child in children:
            try:
                data, _ = await _in_thread(client.get, f"{path}/{child}", watch=self._poke)
            except NoNodeError:
                continue  # went while we read: the watch brings the next read
            try:
                announcements.append(GroupAnnouncement.from_dict(json.loads(data.decode())))
            except (AnnouncementError, ValueError) as error:
                if child not in self._bad:  # once per node: the path is read every interval
                    self._bad.add(child)
                    log.warning("discovery_bad_node", node=f"{path}/{child}", error=str(error))
        self.publish(newest(announcements, self.announce().group))

    def _poke(self, *_: Any) -> None:
        """A kazoo watch or state change (kazoo's thread): wake the trio side."""
        token = self._token
        if token is None:
            return
        try:
            trio.from_thread.run_sync(self._changed.set, trio_token=token)
        except trio.RunFinishedError:
            return

    def _state_changed(self, state: str) -> None:
        if state != KazooState.CONNECTED:
            self._poke()


async def _in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A blocking kazoo call, off the trio thread."""
    return await trio.to_thread.run_sync(functools.partial(function, *args, **kwargs))


def _close(client: KazooClient) -> None:
    try:
        client.stop()
        client.close()
    except _ZK_ERRORS as error:  # closing a broken session: nothing more to do
        log.debug("discovery_zk_close_failed", error=str(error))
