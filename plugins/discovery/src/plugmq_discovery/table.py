"""The groups heard from lately, and which announcement of each counts.

Several masters of one group can be heard at once for a moment (a fenced master's last
datagrams, a ZooKeeper node whose session has not expired yet): the one with the highest epoch
counts, and an older epoch never replaces it. A group not heard from for ``expiry`` seconds is
removed (multicast; in ZooKeeper a vanished node does that).
"""

from __future__ import annotations

from plugmq.api import GroupAnnouncement


class PeerTable:
    """The other groups' newest announcements, with when each was last heard."""

    def __init__(self, local_group: str) -> None:
        self.local_group = local_group
        self._heard: dict[str, tuple[GroupAnnouncement, float]] = {}

    def heard(self, announcement: GroupAnnouncement, now: float) -> bool:
        """Take ``announcement`` (heard at ``now``); False when it does not count (ours, or
        an older epoch of a group whose newer master is heard)."""
        if announcement.group == self.local_group:
            return False
        known = self._heard.get(announcement.group)
        if known is not None and announcement.epoch < known[0].epoch:
            return False
        self._heard[announcement.group] = (announcement, now)
        return True

    def expire(self, now: float) -> list[str]:
        """Remove the groups silent for three of their own intervals; return their names."""
        gone = [
            name
            for name, (announcement, seen) in self._heard.items()
            if now - seen > 3 * announcement.interval
        ]
        for name in gone:
            del self._heard[name]
        return gone

    def peers(self) -> dict[str, GroupAnnouncement]:
        """Every group heard, by name."""
        return {name: announcement for name, (announcement, _) in self._heard.items()}


def newest(
    announcements: list[GroupAnnouncement], local_group: str
) -> dict[str, GroupAnnouncement]:
    """Per group (ours left out) the announcement with the highest epoch (ZooKeeper's list)."""
    found: dict[str, GroupAnnouncement] = {}
    for announcement in announcements:
        if announcement.group == local_group:
            continue
        known = found.get(announcement.group)
        if known is None or announcement.epoch >= known.epoch:
            found[announcement.group] = announcement
    return found
