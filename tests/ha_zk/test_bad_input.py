"""Bad input for ``--ha zookeeper``: clear errors, never two masters, never a silent empty start."""

from __future__ import annotations

from pathlib import Path

import pytest
from kazoo.client import KazooClient
from support import zookeeper
from support.broker_process import BrokerProcess, broker_process
from support.zk_group import zk_broker


def _fails_with(broker: BrokerProcess, text: str) -> str:
    """Start the broker, expect it to exit non-zero naming ``text``; return its output."""
    with pytest.raises(RuntimeError) as failed:
        broker.start(ready_event="broker_listening", timeout=60)
    output = str(failed.value)
    assert "exited with" in output and "exited with 0" not in output
    assert text in output, output
    return output


def test_unreachable_zookeeper_stops_the_broker_with_a_clear_error(tmp_path: Path) -> None:
    hosts = f"127.0.0.1:{zookeeper.free_port()}"
    broker = zk_broker(tmp_path, hosts, "/plugmq/g", name="lonely")
    _fails_with(broker, f"cannot reach ZooKeeper at {hosts}")
    assert not any(broker.data_dir.glob("bdb/*.db")), "the store was opened without ZooKeeper"


def test_zk_path_holding_something_else_is_refused(
    tmp_path: Path, zk_server: zookeeper.ZooKeeperEnsemble, zk_path: str
) -> None:
    client = KazooClient(hosts=zk_server.hosts)
    client.start(10)
    client.create(zk_path, b"not a broker group", makepath=True)
    client.stop()
    broker = zk_broker(tmp_path, zk_server.hosts, zk_path, name="b")
    _fails_with(broker, "is not a plugmq group")


def test_relative_zk_path_is_a_config_error(tmp_path: Path) -> None:
    broker = zk_broker(tmp_path, "127.0.0.1:1", "plugmq/g", name="b")
    _fails_with(broker, "--zk-path must be an absolute ZooKeeper path")


def test_inconsistent_replicas_and_a_broker_too_many_are_refused(
    tmp_path: Path, zk_server: zookeeper.ZooKeeperEnsemble, zk_path: str
) -> None:
    first = zk_broker(tmp_path, zk_server.hosts, zk_path, "--replicas", "1", name="first")
    first.start(ready_event="broker_listening")
    try:
        first.wait_event("ha_zk.promoted")
        other = zk_broker(tmp_path, zk_server.hosts, zk_path, "--replicas", "3", name="other")
        _fails_with(other, "--replicas 3 but the group at")
        # Another group's broker on the same path (same --replicas): refused, never a master.
        intruder = zk_broker(tmp_path, zk_server.hosts, zk_path, "--replicas", "1", name="x")
        _fails_with(intruder, "already has its 1 brokers")
        assert not [e for e in intruder.events() if e["event"] == "broker_active"]
    finally:
        first.stop()


def test_a_foreign_store_is_refused_not_overwritten(
    tmp_path: Path, zk_server: zookeeper.ZooKeeperEnsemble, zk_path: str
) -> None:
    plain = broker_process(tmp_path, name="b")  # a standalone broker's store in b-data
    plain.start()
    plain.stop()
    before = {p.name: p.stat().st_size for p in plain.data_dir.glob("bdb/*.db")}
    broker = zk_broker(tmp_path, zk_server.hosts, zk_path, name="b")
    _fails_with(broker, "holds a store that is not from the group")
    assert {p.name: p.stat().st_size for p in plain.data_dir.glob("bdb/*.db")} == before
