"""The discovery service of one master: announce, listen, and keep the broker's network view.

It runs as a ``plugmq_services`` service, so only a serving master announces (standbys and
replicas run no services) and a fenced master stops at once. It waits for the listeners
(services start before them) so the announcement names real URLs.
"""

from __future__ import annotations

from typing import Any

import structlog
import trio

from plugmq.api import GroupAnnouncement, network_view, publish_peers, start_view, stop_view
from plugmq_discovery.local import local_announcement
from plugmq_discovery.multicast import MulticastDiscovery
from plugmq_discovery.options import DiscoverySettings
from plugmq_discovery.zookeeper import ZooKeeperDiscovery

log = structlog.get_logger("plugmq.discovery")

STASH_KEY = "discovery"


class DiscoveryService:
    """One master's discovery (a new one at every promotion)."""

    def __init__(self, broker: Any, settings: DiscoverySettings) -> None:
        self.broker = broker
        self.settings = settings
        backend = ZooKeeperDiscovery if settings.mode == "zookeeper" else MulticastDiscovery
        self.backend = backend(settings, self.announce, self.publish)

    def announce(self) -> GroupAnnouncement:
        """This master's announcement now (its group's URLs change as members come and go)."""
        announcement = local_announcement(self.broker, self.settings.interval)
        view = network_view(self.broker)
        if view is not None:
            view.local = announcement
        return announcement

    def publish(self, peers: dict[str, GroupAnnouncement]) -> None:
        """Hand the other groups to the broker (the hook fires only on a change)."""
        if publish_peers(self.broker, peers):
            log.info(
                "discovery_network_changed",
                groups={name: peer.master for name, peer in sorted(peers.items())},
            )

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start once the broker serves; run the backend until cancelled (fenced, stopping)."""
        task_status.started()
        await self.broker.active.wait()
        local = self.announce()
        start_view(self.broker, self.backend.name, local)
        log.info(
            "discovery_started",
            mode=self.backend.name,
            group=local.group,
            urls=list(local.urls),
            epoch=local.epoch,
        )
        try:
            await self.backend.run()
        finally:
            stop_view(self.broker)
