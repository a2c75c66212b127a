"""The issue-14 set-up in small: an ha_zk group and a standalone broker, found through
ZooKeeper, linked by ``--network dynamic``; the group's master is killed and the link follows.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from support.federation import bind_queue, collect, manage, publish
from support.polling import wait_until
from support.zk_group import HAGroup

INTERVAL = "0.3"


def bound_on(broker, key: str) -> bool:
    return any(
        b["destination"].startswith("federation.") and b["routing_key"] == key
        for b in manage(broker, "binding.list")
    )


def test_a_standalone_broker_follows_an_ha_zk_groups_master(
    tmp_path: Path, start_broker, zk_server, network_path
):
    network = ("--discovery", "zookeeper", "--discovery-zk-path", network_path,
               "--discovery-interval", INTERVAL, "--network", "dynamic")  # fmt: skip
    (tmp_path / "g1").mkdir()
    group = HAGroup(
        tmp_path / "g1", zk_server.hosts, f"{network_path}-g1", size=3,
        extra=("--ha-group", "g1", *network),
    )  # fmt: skip
    try:
        group.start()
        first = group.brokers[group.master()]
        b = start_broker(
            "b", "--broker-id", "B", *network, "--discovery-zk-address", zk_server.hosts
        )
        b.wait_event("federation_network_route_started", group="g1", timeout=30)
        bind_queue(b, "b-all", "amq.topic", "k")
        wait_until(partial(bound_on, first, "k"), what="B's binding on g1's master")
        publish(first, "amq.topic", [("k", b"before")])
        assert [m[1] for m in collect(b, "b-all", 1, timeout=30)] == [b"before"]

        first.kill()
        survivors = tuple(i for i, broker in enumerate(group.brokers) if broker is not first)
        second = group.brokers[group.master(among=survivors)]
        b.wait_event("federation_network_route_retargeted", timeout=60)
        assert bound_on(second, "k"), "the binding came with the replicated store"
        publish(second, "amq.topic", [("k", b"after")])
        assert [m[1] for m in collect(b, "b-all", 1, timeout=60)] == [b"after"]
    finally:
        group.stop()
