"""Fast failover of ``--ha zookeeper``: a replica ends a dead master's mastership itself.

The probe (``plugmq_ha_zk.liveness``) on real sockets, the conditional delete of the master node
(``election.end_mastership``) on the session's real ZooKeeper, and a kill -9 of a real master
whose successor is elected because a survivor proved it dead (not because its session expired).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from support.zk_group import HAGroup
from support.zookeeper import ZooKeeperEnsemble

from plugmq_ha_zk import election, liveness
from plugmq_ha_zk.group import ensure_group


@pytest.fixture
def zk(zk_server: ZooKeeperEnsemble, zk_path: str) -> Iterator[KazooClient]:
    """A kazoo client on the session's ZooKeeper with this test's group nodes created."""
    client = KazooClient(hosts=zk_server.hosts)
    client.start(timeout=30)
    ensure_group(client, zk_path, 3)
    yield client
    client.stop()
    client.close()


def test_probe_says_gone_only_when_the_connection_is_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        address = listener.getsockname()
        assert liveness.master_gone(address) is False  # someone listens: not proven dead
    assert liveness.master_gone(address) is True  # closed: refused


def _take(client: KazooClient, root: str, broker_id: str) -> election.Master:
    round_, version = election.current_round(client, root)
    payload = {"id": broker_id, "position": [0, 1, 28], "url": None, "replication": "h:1"}
    epoch = election.take_mastership(client, root, round_, version, payload)
    assert epoch == round_ + 1
    master = election.read_master(client, root)
    assert master is not None and master.epoch == epoch
    return master


def test_end_mastership_deletes_the_named_epochs_master_node(zk: KazooClient, zk_path: str) -> None:
    master = _take(zk, zk_path, "a")
    assert election.end_mastership(zk, zk_path, master) is True
    assert election.read_master(zk, zk_path) is None
    assert election.end_mastership(zk, zk_path, master) is False  # already gone


def test_end_mastership_never_touches_a_newer_master(zk: KazooClient, zk_path: str) -> None:
    old = _take(zk, zk_path, "a")
    assert election.end_mastership(zk, zk_path, old)
    new = _take(zk, zk_path, "b")
    assert election.end_mastership(zk, zk_path, old) is False  # a stale report of "a" dead
    assert election.read_master(zk, zk_path) == new


def _promoted_epoch(group: HAGroup, index: int) -> int:
    return [e for e in group.brokers[index].events() if e["event"] == "ha_zk.promoted"][-1]["epoch"]


def test_killed_master_is_ended_by_a_survivor_not_by_its_session(group: HAGroup) -> None:
    group.start()
    master = group.master()
    group.wait_caught_up(master)
    old_epoch = _promoted_epoch(group, master)
    group.brokers[master].kill()
    survivors = tuple(i for i in range(3) if i != master)
    new = group.master(among=survivors)
    assert _promoted_epoch(group, new) == old_epoch + 1
    gone = [
        event
        for index in survivors
        for event in group.brokers[index].events()
        if event["event"] == "ha_zk.master_gone"
    ]
    # A survivor deleted the master node itself: the dead master's session had not expired.
    assert [e["epoch"] for e in gone if e["ended_here"]] == [old_epoch], gone
