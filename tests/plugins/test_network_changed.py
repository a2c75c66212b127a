"""``plugmq_network_changed`` through ``plugmq.network.publish_peers``: called once per real
change of the peer set, never for a repeated announcement, with failures contained.

The broker runs in the test's trio loop (real store, real listener); the test is the
discovery plugin here: it publishes peer sets the way plugmq_discovery does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.in_process import running_broker

from plugmq.api import GroupAnnouncement, network_view, publish_peers, start_view, stop_view

PLUGINS = Path(__file__).parent / "plugins"


def group(name: str, master: str, epoch: int, *standbys: str) -> GroupAnnouncement:
    return GroupAnnouncement(name, name.upper(), master, (master, *standbys), epoch, "zookeeper")


async def test_called_once_per_real_change_and_failures_are_contained(tmp_path: Path) -> None:
    modules = (str(PLUGINS / "network_raiser.py"), str(PLUGINS / "network_listener.py"))
    async with running_broker(tmp_path, *modules) as broker:
        local = group("me", "amqp://me:1/", 1)
        start_view(broker, "test", local)
        g1 = group("g1", "amqp://a:1/", 3, "amqp://b:1/")
        assert publish_peers(broker, {"g1": g1})
        # The same announcement again, its URLs in another order: no change.
        urls = ("amqp://b:1/", "amqp://a:1/")
        same = GroupAnnouncement("g1", "G1", "amqp://a:1/", urls, 3, "zookeeper")
        assert not publish_peers(broker, {"g1": same})
        moved = group("g1", "amqp://b:1/", 4, "amqp://a:1/")  # a failover
        g2 = group("g2", "amqp://c:1/", 1)
        assert publish_peers(broker, {"g1": moved, "g2": g2})
        assert publish_peers(broker, {"g2": g2})  # g1 vanished
        assert broker.stash["network_listener"] == [
            {"g1": ("amqp://a:1/", 3)},
            {"g1": ("amqp://b:1/", 4), "g2": ("amqp://c:1/", 1)},
            {"g2": ("amqp://c:1/", 1)},
        ]
        view = network_view(broker)
        assert view is not None and view.changes == 3 and view.local == local
        assert [g["group"] for g in view.describe()["groups"]] == ["me", "g2"]
        stop_view(broker)
        assert network_view(broker) is None


async def test_publishing_without_a_view_is_a_programming_error(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        with pytest.raises(RuntimeError, match="publish_peers before start_view"):
            publish_peers(broker, {})
