"""Multicast discovery with real brokers on loopback: who announces, what, and who is found.

Every broker announces to the test's own ``GROUP:PORT`` every 0.3 s (a group is removed after
three silent intervals); the test listens on the same group with a plain UDP socket.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.admin_cli import cli_json
from support.broker_process import BrokerProcess, broker_process
from support.multicast import MulticastListener, send_datagram
from support.polling import wait_until
from support.sharedfs import SharedFSGroup

from plugmq.api import AnnouncementError
from plugmq_discovery.multicast import parse

INTERVAL = "0.3"


def flags(target: str) -> tuple[str, ...]:
    return ("--discovery", "multicast", "--discovery-multicast", target,
            "--discovery-interval", INTERVAL)  # fmt: skip


def groups_seen(broker: BrokerProcess) -> dict[str, dict]:
    """``plugmq stat ha --json`` on ``broker``: every row by group."""
    return {row["group"]: row for row in cli_json(broker.url, "stat", "ha")}


def test_masters_find_each_other_and_a_vanished_group_is_removed(start_broker, multicast):
    a = start_broker("a", "--broker-id", "A", *flags(multicast))
    b = start_broker("b", "--broker-id", "B", *flags(multicast))
    with MulticastListener(multicast) as ear:
        heard = ear.wait_for(lambda d: d.get("group") == "B")
    assert heard["v"] == 1
    assert heard["broker_id"] == "B" and heard["master"] == f"amqp://127.0.0.1:{b.port}/"
    assert heard["urls"] == [heard["master"]] and heard["epoch"] == 1
    assert heard["ha"] == "standalone"

    a.wait_event("discovery_network_changed", groups={"B": heard["master"]})
    rows = groups_seen(a)
    assert rows["A"]["role"] == "master" and rows["A"]["details"]["group_urls"] == [
        f"amqp://127.0.0.1:{a.port}/"
    ]
    assert rows["B"]["listening"] == [heard["master"]]
    assert rows["B"]["details"] == {"broker_id": "B", "standbys": [], "discovered_by": "multicast"}

    b.kill()
    expired = a.wait_event("discovery_group_expired", timeout=10)
    assert expired["groups"] == ["B"]
    assert set(groups_seen(a)) == {"A"}


BAD = {
    b"\xff\xfe not utf-8": "not JSON",
    b"{truncated": "not JSON",
    b"[1, 2]": "JSON object",
    json.dumps({"v": 99, "group": "X"}).encode(): "version 99",
    json.dumps({"v": 1, "group": "X", "master": "amqp://h:1/", "epoch": 1}).encode(): "urls",
    json.dumps(
        {"v": 1, "group": "", "master": "amqp://h:1/", "urls": ["amqp://h:1/"], "epoch": 1}
    ).encode(): "'group'",
    json.dumps(
        {"v": 1, "group": "X", "master": "m", "urls": ["not a url"], "epoch": 1}
    ).encode(): "not a broker URL",
    json.dumps(
        {"v": 1, "group": "X", "master": "amqp://h:1/", "urls": ["amqp://h:1/"], "epoch": -1}
    ).encode(): "'epoch'",
}


@pytest.mark.parametrize(("datagram", "reason"), BAD.items(), ids=range(len(BAD)))
def test_a_malformed_datagram_is_refused_with_its_reason(datagram: bytes, reason: str):
    with pytest.raises(AnnouncementError, match=reason):
        parse(datagram)


def test_malformed_datagrams_are_logged_and_ignored(start_broker, multicast):
    a = start_broker("a", "--broker-id", "A", *flags(multicast))
    for datagram in BAD:
        send_datagram(multicast, datagram)
    event = a.wait_event("discovery_bad_datagram", timeout=10)
    assert "not JSON" in event["error"] and event["sender"].startswith("127.0.0.1:")
    # Still listening: a good peer after the garbage is found.
    b = start_broker("b", "--broker-id", "B", *flags(multicast))
    a.wait_event("discovery_network_changed", groups={"B": f"amqp://127.0.0.1:{b.port}/"})
    assert set(groups_seen(a)) == {"A", "B"}
    # One log line for the lot (a noisy sender is logged once a minute), and the broker is up.
    assert sum(e["event"] == "discovery_bad_datagram" for e in a.events()) == 1
    assert a.alive


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--discovery", "carrier-pigeon"), "--discovery must be one of zookeeper, multicast"),
        (("--discovery", "multicast", "--discovery-multicast", "127.0.0.1:5677"),
         "is not a multicast address"),
        (("--discovery", "multicast", "--discovery-multicast", "239.255.77.77"),
         "--discovery-multicast must be host:port"),
        (("--discovery", "multicast", "--discovery-interval", "0"),
         "--discovery-interval must be"),
        (("--discovery", "zookeeper", "--discovery-zk-path", "relative/path"),
         "--discovery-zk-path must be an absolute path"),
    ],
)  # fmt: skip
def test_bad_flags_stop_the_broker_with_their_reason(tmp_path: Path, args, message):
    broker = broker_process(tmp_path, *args)
    with pytest.raises(RuntimeError, match="broker exited") as failure:
        broker.start(timeout=30)
    assert message in str(failure.value)


def test_an_interface_that_is_not_local_is_logged_and_the_broker_serves(start_broker, multicast):
    # 203.0.113.7 (TEST-NET-3) is on no interface: joining the group there fails at once,
    # before anything could be sent.
    a = start_broker(
        "a", "--broker-id", "A", *flags(multicast), "--discovery-interface", "203.0.113.7"
    )
    event = a.wait_event("discovery_socket_failed", timeout=10)
    assert event["interface"] == "203.0.113.7" and event["error"]
    assert cli_json(a.url, "stat", "ha")[0]["role"] == "master"  # serving all along


def test_only_the_master_announces_and_a_failover_moves_the_announcement(
    tmp_path: Path, start_broker, multicast
):
    group = SharedFSGroup(tmp_path, size=2, lease=1.0, group="g1", extra=flags(multicast))
    try:
        master = group.start()
        standby = group.brokers[1]
        observer = start_broker("obs", "--broker-id", "OBS", *flags(multicast))
        with MulticastListener(multicast) as ear:
            ear.wait_for(lambda d: d.get("group") == "g1")
            heard = [d for d in ear.collect(2.0) if d.get("group") == "g1"]
        assert heard, "the group's master went silent"
        assert {d["master"] for d in heard} == {f"amqp://127.0.0.1:{master.port}/"}
        first = heard[-1]
        assert first["ha"] == "sharedfs"
        assert f"amqp://127.0.0.1:{standby.port}/" in first["urls"]  # the group's URL list
        assert not any(e["event"].startswith("discovery_") for e in standby.events())

        master.kill()
        with MulticastListener(multicast) as ear:
            moved = ear.wait_for(
                lambda d: d.get("group") == "g1" and d["epoch"] > first["epoch"], timeout=30
            )
        assert moved["master"] == f"amqp://127.0.0.1:{standby.port}/"
        wait_until(
            lambda: groups_seen(observer)["g1"]["listening"] == [moved["master"]],
            what="the observer sees g1's new master",
        )
        assert groups_seen(observer)["g1"]["epoch"] == moved["epoch"]
    finally:
        group.stop()
