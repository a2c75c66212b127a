"""ZooKeeper discovery with real brokers and a real ZooKeeper: nodes, failover, outages.

Each test has a network path of its own on the session's ZooKeeper; the test reads the path
with kazoo to see exactly what the brokers registered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from support import zookeeper
from support.admin_cli import cli_json
from support.zk_group import HAGroup

INTERVAL = "0.3"


def flags(zk: str, path: str) -> tuple[str, ...]:
    return ("--discovery", "zookeeper", "--discovery-zk-address", zk,
            "--discovery-zk-path", path, "--discovery-interval", INTERVAL)  # fmt: skip


@pytest.fixture
def zk(zk_server: zookeeper.ZooKeeperEnsemble) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zk_server.hosts)
    client.start(10)
    yield client
    client.stop()
    client.close()


def nodes(zk: KazooClient, path: str) -> dict[str, dict]:
    """Every registered node under ``path`` and its announcement."""
    found = {}
    for child in zk.get_children(path) if zk.exists(path) else []:
        data, _ = zk.get(f"{path}/{child}")
        found[child] = json.loads(data)
    return found


def wait_nodes(zk, path, check, timeout: float = 30.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = nodes(zk, path)
        if check(found):
            return found
        time.sleep(0.1)
    raise TimeoutError(f"nodes under {path} never matched: {nodes(zk, path)}")


def test_masters_register_find_each_other_and_a_stopped_group_goes_at_once(
    start_broker, zk_server, zk, network_path
):
    a = start_broker("a", "--broker-id", "A", *flags(zk_server.hosts, network_path))
    b = start_broker("b", "--broker-id", "B", *flags(zk_server.hosts, network_path))
    found = wait_nodes(zk, network_path, lambda n: len(n) == 2)
    by_group = {announcement["group"]: (name, announcement) for name, announcement in found.items()}
    assert set(by_group) == {"A", "B"}
    name, announcement = by_group["B"]
    assert name.startswith("B-")  # <group>-<sequence>
    assert announcement["master"] == f"amqp://127.0.0.1:{b.port}/"
    assert announcement["broker_id"] == "B" and announcement["epoch"] == 1
    a.wait_event("discovery_network_changed", groups={"B": announcement["master"]})
    rows = {row["group"]: row for row in cli_json(a.url, "stat", "ha")}
    assert rows["B"]["details"]["discovered_by"] == "zookeeper"

    assert b.stop() == 0  # a clean stop closes the session: the node goes at once
    a.wait_event("discovery_network_changed", groups={}, timeout=10)
    assert [n["group"] for n in nodes(zk, network_path).values()] == ["A"]


def test_only_the_master_registers_and_a_failover_moves_the_node(
    tmp_path: Path, start_broker, zk_server, zk, network_path
):
    # The group's --zk-address is discovery's default ZooKeeper.
    (tmp_path / "g1").mkdir()
    group = HAGroup(
        tmp_path / "g1", zk_server.hosts, f"{network_path}-g1", size=3,
        extra=("--ha-group", "g1", "--discovery", "zookeeper", "--discovery-zk-path",
               network_path, "--discovery-interval", INTERVAL),
    )  # fmt: skip
    try:
        group.start()
        first = group.master()
        master = group.brokers[first]
        found = wait_nodes(zk, network_path, lambda n: len(n) == 1)
        [(_, announcement)] = found.items()
        assert announcement["group"] == "g1" and announcement["ha"] == "zookeeper"
        assert announcement["master"] == f"amqp://127.0.0.1:{master.port}/"
        for index, broker in enumerate(group.brokers):
            if index != first:
                assert not any(e["event"].startswith("discovery_") for e in broker.events())
        observer = start_broker("obs", "--broker-id", "OBS", *flags(zk_server.hosts, network_path))
        observer.wait_event("discovery_network_changed", groups={"g1": announcement["master"]})

        master.kill()
        second = group.master(among=tuple(i for i in range(3) if i != first))
        new_url = f"amqp://127.0.0.1:{group.brokers[second].port}/"
        wait_nodes(
            zk,
            network_path,
            lambda n: [a["master"] for a in n.values() if a["group"] == "g1"] == [new_url],
        )  # the new node is there and the dead master's is gone (its session expired)
        observer.wait_event("discovery_network_changed", groups={"g1": new_url}, timeout=30)
        row = {r["group"]: r for r in cli_json(observer.url, "stat", "ha")}["g1"]
        assert row["epoch"] > announcement["epoch"]
    finally:
        group.stop()


def test_unreachable_zookeeper_at_start_is_logged_and_retried_the_broker_serves(
    tmp_path: Path, start_broker, network_path
):
    later = zookeeper.ZooKeeperEnsemble(tmp_path / "zk")  # ports chosen, not started yet
    try:
        a = start_broker("a", "--broker-id", "A", *flags(later.hosts, network_path))
        event = a.wait_event("discovery_zk_unreachable", timeout=30)
        assert event["zk"] == later.hosts and "keeps serving" in event["detail"]
        assert cli_json(a.url, "stat", "ha")[0]["role"] == "master"
        later.start()
        a.wait_event("discovery_zk_registered", timeout=60)
    finally:
        later.stop()


def test_zookeeper_lost_later_is_logged_and_the_broker_serves(
    tmp_path: Path, start_broker, network_path
):
    ensemble = zookeeper.ZooKeeperEnsemble(tmp_path / "zk").start()
    try:
        a = start_broker("a", "--broker-id", "A", *flags(ensemble.hosts, network_path))
        a.wait_event("discovery_zk_registered", timeout=30)
        ensemble.stop()
        a.wait_event("discovery_zk_lost", timeout=30)
        a.wait_event("discovery_zk_unreachable", timeout=30)
        assert a.alive and cli_json(a.url, "stat", "ha")[0]["role"] == "master"
    finally:
        ensemble.stop()


def test_a_node_that_is_not_an_announcement_is_logged_and_ignored(
    start_broker, zk_server, zk, network_path
):
    zk.ensure_path(network_path)
    zk.create(f"{network_path}/junk-", b"not json", sequence=True)
    zk.create(f"{network_path}/old-", json.dumps({"v": 7}).encode(), sequence=True)
    a = start_broker("a", "--broker-id", "A", *flags(zk_server.hosts, network_path))
    errors = {a.wait_event("discovery_bad_node", timeout=30)["error"] for _ in range(2)}
    assert any("version 7" in error for error in errors), errors
    b = start_broker("b", "--broker-id", "B", *flags(zk_server.hosts, network_path))
    a.wait_event("discovery_network_changed", groups={"B": f"amqp://127.0.0.1:{b.port}/"})
    assert a.alive
