"""What ``plugmq stat ha`` shows for ``--ha zookeeper`` (role-independent details).

The strategy updates it from its own loop (the master from its quorum service, every member when
the master changes), so :meth:`Status.describe` never blocks on ZooKeeper.
"""

from __future__ import annotations

from typing import Any

from plugmq_ha_zk.election import Master, Member, Position
from plugmq_ha_zk.options import ZKSettings


class Status:
    """The last known state of the group, as this broker saw it."""

    def __init__(self, settings: ZKSettings) -> None:
        self.settings = settings
        self.url: str | None = None
        self.master: Master | None = None
        self.replicas: list[dict[str, Any]] = []

    def update_master(
        self, mine: Position, sites: list[dict[str, Any]], members: list[Member]
    ) -> None:
        """The master's view: every member's position and its lag behind ours, in log bytes."""
        connected = {site["address"]: site["connected"] for site in sites}
        self.replicas = [
            {
                "replication": member.replication,
                "url": member.url,
                "connected": connected.get(member.replication, False),
                "position": list(member.position),
                "lag_bytes": _lag(mine, member.position),
            }
            for member in sorted(members, key=lambda m: m.replication)
            if member.replication != _text(self.settings.replication_address)
        ]

    def cluster_urls(self) -> list[str]:
        """Every member's client URL, the master's first (what failover clients try)."""
        urls = [self.master.url] if self.master is not None and self.master.url else []
        urls += [r["url"] for r in self.replicas if r.get("url")]
        if self.url:
            urls.append(self.url)
        return list(dict.fromkeys(urls))

    def describe(self) -> dict[str, Any]:
        """zk path, quorum, master and replicas with their lag."""
        master = self.master
        return {
            "zk_address": self.settings.zk_address,
            "zk_path": self.settings.zk_path,
            "replicas": self.settings.replicas,
            "quorum": self.settings.quorum,
            "replication_address": _text(self.settings.replication_address),
            "master": None
            if master is None
            else {"epoch": master.epoch, "url": master.url, "replication": master.replication},
            "members": self.replicas,
        }


def _text(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _lag(mine: Position, theirs: Position) -> int | None:
    """Log bytes behind when in the same log file, else None (a different file: far behind)."""
    if mine[1] == theirs[1]:
        return max(0, mine[2] - theirs[2])
    return None
