"""The network of HA groups a master knows of: announcements, and the view discovery keeps.

A *group* is one HA group (``--ha-group``) or one broker without HA. Its serving master
announces it (a discovery plugin does the announcing and the listening: ZooKeeper, multicast);
every master keeps a :class:`NetworkView` of the *other* groups in ``broker.stash``. A
discovery plugin hands each new set to :func:`publish_peers`, which calls the
``plugmq_network_changed`` hook only when the set really changed (a group came, went, or
changed its master, epoch or URLs), never per message and never per announcement.

Readers (federation's ``--network dynamic``, ``plugmq stat ha``) call :func:`network_view`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: The version field of an announcement; a newer one is refused (not guessed at).
ANNOUNCEMENT_VERSION = 1
STASH_KEY = "network"
_MAX_TEXT = 1024
_MAX_URLS = 64


class AnnouncementError(ValueError):
    """An announcement that cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True)
class GroupAnnouncement:
    """What a group's serving master says about the group."""

    #: The group's name (``--ha-group``; a broker without HA uses its federation broker id).
    group: str
    #: The announcing master's federation broker id ("" without federation).
    broker_id: str
    #: The announcing master's client URL.
    master: str
    #: Every client URL of the group, the master's first (what failover clients try).
    urls: tuple[str, ...]
    #: The mastership's epoch (a newer master of the group has a larger one).
    epoch: int
    #: The HA mode (``standalone``, ``zookeeper``, ``sharedfs``, ``pg``).
    ha: str = "standalone"
    #: The announcer's announcement period in seconds (receivers expire it after ~3).
    interval: float = 1.0

    @property
    def standbys(self) -> tuple[str, ...]:
        """The group's URLs other than the master's."""
        return tuple(url for url in self.urls if url != self.master)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the version field."""
        return {
            "v": ANNOUNCEMENT_VERSION,
            "group": self.group,
            "broker_id": self.broker_id,
            "master": self.master,
            "urls": list(self.urls),
            "epoch": self.epoch,
            "ha": self.ha,
            "interval": self.interval,
        }

    @classmethod
    def from_dict(cls, data: Any) -> GroupAnnouncement:
        """The inverse of :meth:`to_dict`; :class:`AnnouncementError` for anything else."""
        if not isinstance(data, dict):
            raise AnnouncementError(f"an announcement is a JSON object, not {type(data).__name__}")
        version = data.get("v")
        if version != ANNOUNCEMENT_VERSION:
            raise AnnouncementError(
                f"announcement version {version!r} is not {ANNOUNCEMENT_VERSION}"
            )
        urls = data.get("urls")
        if not isinstance(urls, list) or not 0 < len(urls) <= _MAX_URLS:
            raise AnnouncementError(f"'urls' must be a list of 1 to {_MAX_URLS} URLs")
        epoch, interval = data.get("epoch"), data.get("interval", 1.0)
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise AnnouncementError(f"'epoch' must be a whole number >= 0, not {epoch!r}")
        if not isinstance(interval, int | float) or not 0 < interval <= 3600:
            raise AnnouncementError(f"'interval' must be seconds in (0, 3600], not {interval!r}")
        return cls(
            group=_text(data, "group", empty=False),
            broker_id=_text(data, "broker_id"),
            master=_text(data, "master", empty=False),
            urls=tuple(_url(url) for url in urls),
            epoch=epoch,
            ha=_text(data, "ha"),
            interval=float(interval),
        )

    def same_as(self, other: GroupAnnouncement | None) -> bool:
        """Whether ``other`` says the same thing (the URL *set*, not its order, counts)."""
        return other is not None and self._identity() == other._identity()

    def _identity(self) -> tuple[Any, ...]:
        return (
            self.group,
            self.broker_id,
            self.master,
            frozenset(self.urls),
            self.epoch,
            self.ha,
        )


def _text(data: dict[str, Any], name: str, empty: bool = True) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or len(value) > _MAX_TEXT or (not empty and not value):
        raise AnnouncementError(f"'{name}' must be a non-empty string of at most {_MAX_TEXT}")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT or "://" not in value:
        raise AnnouncementError(f"'urls' holds {value!r}, which is not a broker URL")
    return value


@dataclass
class NetworkView:
    """The other groups this master knows of, and how it knows (kept in ``broker.stash``)."""

    #: How the peers are found (``zookeeper``, ``multicast``).
    source: str
    #: This broker's own announcement (None until it made one).
    local: GroupAnnouncement | None = None
    #: Every other group, by name.
    peers: Mapping[str, GroupAnnouncement] = field(default_factory=lambda: MappingProxyType({}))
    #: When the peer set last changed (``time.time()``).
    changed_at: float = 0.0
    #: How many times it changed.
    changes: int = 0

    def describe(self) -> dict[str, Any]:
        """The view as JSON-ready data (``plugmq stat ha``, ``route map``)."""
        groups = [self.local, *self.peers.values()] if self.local else [*self.peers.values()]
        return {
            "source": self.source,
            "local_group": self.local.group if self.local else None,
            "groups": [
                announcement.to_dict() | {"standbys": list(announcement.standbys)}
                for announcement in groups
            ],
            "changes": self.changes,
        }


def network_view(broker: Any) -> NetworkView | None:
    """The broker's view of the network, or None when no discovery runs."""
    return broker.stash.get(STASH_KEY)


def start_view(broker: Any, source: str, local: GroupAnnouncement | None) -> NetworkView:
    """Begin a new (empty) view for a discovery that starts (at every promotion)."""
    view = broker.stash[STASH_KEY] = NetworkView(source, local)
    return view


def publish_peers(broker: Any, peers: Mapping[str, GroupAnnouncement]) -> bool:
    """Make ``peers`` the broker's view; call ``plugmq_network_changed`` if it changed.

    Returns whether it changed. Only announcements that say something new count: a repeat of
    the same announcement (every interval) changes nothing.
    """
    view = network_view(broker)
    if view is None:
        raise RuntimeError("publish_peers before start_view")
    old = view.peers
    if old.keys() == peers.keys() and all(peers[name].same_as(old[name]) for name in peers):
        view.peers = MappingProxyType(dict(peers))  # keep the newest copies, silently
        return False
    view.peers = MappingProxyType(dict(peers))
    view.changed_at = time.time()
    view.changes += 1
    broker.plugins.events.network_changed(broker, view.peers)
    return True


def stop_view(broker: Any) -> None:
    """Forget the view (discovery stopped: the broker was fenced or stops)."""
    broker.stash.pop(STASH_KEY, None)
