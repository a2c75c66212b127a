"""Fault rounds of ``--ha zookeeper``: real ZooKeeper, 3 real brokers, real pika clients.

The ledger is the shared one (``tests/support/ledger.py``, design.md "Fault testing"): every
confirmed message is delivered at least once; no settled ack comes back (an ack in flight when
the master dies may: AMQP acks are not confirmed); never two masters confirming.
Rounds: ``HAZK_ROUNDS`` (default 20, as issue 16 asks: ~100 s; fewer for a quick run, see
docs/plugins/ha_zk.md). Seeded: ``HAZK_SEED``. Every fault is injected into a healthy group
(``wait_caught_up``): a replica still in its first sync has no position to report, so losing
the master then leaves too few members to elect (the quorum rule, not a flake).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
import time
from pathlib import Path

import pika
import pytest
from pika.exceptions import AMQPError
from support.admin_cli import cli_json
from support.ledger import Ledger
from support.zk_group import HAGroup
from support.zookeeper import ZooKeeperEnsemble

ROUNDS = int(os.environ.get("HAZK_ROUNDS", "20"))
SEED = int(os.environ.get("HAZK_SEED", "1616"))
QUEUE = "ledger"


def _connect(url: str) -> pika.BlockingConnection:
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.blocked_connection_timeout = 10
    return pika.BlockingConnection(parameters)


def _publisher(url: str, ledger: Ledger, ids: itertools.count, stop: threading.Event) -> None:
    """Publish persistent messages with confirms until stopped or the broker goes away."""
    try:
        connection = _connect(url)
        channel = connection.channel()
        channel.confirm_delivery()
        while not stop.is_set():
            message_id = str(next(ids))
            ledger.publish(message_id)
            properties = pika.BasicProperties(delivery_mode=2, message_id=message_id)
            try:
                channel.basic_publish("", QUEUE, message_id.encode(), properties)
            except pika.exceptions.NackError:
                continue  # not confirmed: the ledger expects nothing of it
            ledger.confirm(message_id)
        connection.close()
    except (AMQPError, OSError):
        return  # the master died under us: what was confirmed is in the ledger


def _consumer(url: str, ledger: Ledger, stop: threading.Event, rng: random.Random) -> None:
    """Ack about half the messages it gets (the rest stay for the final drain)."""
    try:
        connection = _connect(url)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=50)
        for method, _, body in channel.consume(QUEUE, inactivity_timeout=0.1):
            if stop.is_set():
                break
            if method is None:
                continue
            ledger.deliver(body.decode())
            if rng.random() < 0.5:
                channel.basic_ack(method.delivery_tag)
                ledger.ack(body.decode())
            else:
                channel.basic_nack(method.delivery_tag, requeue=True)
        connection.close()
    except (AMQPError, OSError):
        return


def _declare(url: str) -> None:
    connection = _connect(url)
    connection.channel().queue_declare(QUEUE, durable=True)
    connection.close()


def _drain(url: str) -> list[int]:
    """Every message left in the queue (acked as read)."""
    connection = _connect(url)
    channel = connection.channel()
    found = []
    while True:
        method, _, body = channel.basic_get(QUEUE, auto_ack=True)
        if method is None:
            break
        found.append(int(body))
    connection.close()
    return found


def _masters_confirming(group: HAGroup) -> list[int]:
    """Live brokers that currently accept a connection as master."""
    serving = []
    for index, broker in enumerate(group.brokers):
        if not broker.alive:
            continue
        try:
            _connect(broker.url).close()
        except (AMQPError, OSError):
            continue
        serving.append(index)
    return serving


@pytest.mark.timeout(60 + 30 * ROUNDS)
def test_kill_master_under_confirmed_publishers_and_acking_consumers(group: HAGroup) -> None:
    rng = random.Random(SEED)
    ledger = Ledger()
    ids = itertools.count(1)
    group.start()
    master = group.master()
    _declare(group.brokers[master].url)
    group.wait_caught_up(master)
    for round_ in range(ROUNDS):
        url = group.brokers[master].url
        stop = threading.Event()
        workers = [
            threading.Thread(target=_publisher, args=(url, ledger, ids, stop)) for _ in range(3)
        ] + [threading.Thread(target=_consumer, args=(url, ledger, stop, rng))]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 0.5 + rng.random()
        while time.monotonic() < deadline or ledger.confirmed_count < 20 * (round_ + 1):
            time.sleep(0.05)
        assert _masters_confirming(group) == [master]
        ledger.fault()
        group.brokers[master].kill()
        stop.set()
        for worker in workers:
            worker.join(30)
        survivors = tuple(i for i in range(3) if i != master)
        killed, master = master, group.master(among=survivors)
        ledger.recovered()
        group.brokers[killed].start(ready_event="broker_listening")
        group.brokers[killed].wait_event("ha_zk.caught_up", timeout=60)
    # Drain once the last killed broker has rejoined (it must not be a second master).
    assert _masters_confirming(group) == [master]
    for message_id in _drain(group.brokers[master].url):
        ledger.deliver(str(message_id))
        ledger.ack(str(message_id))
    report = ledger.check()
    assert report.confirmed >= 20 * ROUNDS


def test_log_story_not_enough_members_then_promoted_with_recovery(group: HAGroup) -> None:
    group.start(0)
    first = group.brokers[0]
    event = first.wait_event("ha_zk.not_enough_members")
    assert event["message"] == "Not enough cluster members connected to elect a master"
    assert (event["reported"], event["quorum"]) == (1, 2)
    group.start(1, 2)
    master = group.master()
    promoted = group.brokers[master]
    story = [e["event"] for e in promoted.events() if e["event"].startswith(("ha_zk.", "rec"))]
    assert story.index("ha_zk.elected") < story.index("recovery_progress")
    assert story.index("recovery_progress") < story.index("ha_zk.promoted")
    active = [e for e in promoted.events() if e["event"] == "broker_active"]
    assert [e["epoch"] for e in active] == [1]
    # A replica redirects clients to the master, naming it.
    replica = next(b for i, b in enumerate(group.brokers) if i != master)
    with pytest.raises(AMQPError) as refused:
        _connect(replica.url)
    assert f"127.0.0.1:{promoted.port}" in repr(refused.value)


def test_two_replicas_killed_stops_confirming_until_one_returns(group: HAGroup) -> None:
    group.start()
    master = group.master()
    url = group.brokers[master].url
    _declare(url)
    replicas = [i for i in range(3) if i != master]
    for index in replicas:
        group.brokers[index].kill()
    group.brokers[master].wait_event("ha_zk.below_quorum")
    connection = _connect(url)
    channel = connection.channel()
    channel.confirm_delivery()
    with pytest.raises((pika.exceptions.NackError, AMQPError)):
        # Blocked (connection.blocked) or nacked: never confirmed below quorum.
        channel.basic_publish("", QUEUE, b"lonely", pika.BasicProperties(delivery_mode=2))
    group.brokers[replicas[0]].start(ready_event="broker_listening")
    group.brokers[master].wait_event("ha_zk.quorum_back", timeout=60)
    connection = _connect(url)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("", QUEUE, b"back", pika.BasicProperties(delivery_mode=2))
    connection.close()


def test_paused_master_never_confirms_after_a_new_master_was_elected(group: HAGroup) -> None:
    group.start()
    old = group.master()
    _declare(group.brokers[old].url)
    group.wait_caught_up(old)
    connection = _connect(group.brokers[old].url)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("", QUEUE, b"1", pika.BasicProperties(delivery_mode=2))
    group.brokers[old].process.send_signal(signal.SIGSTOP)
    try:
        new = group.master(among=tuple(i for i in range(3) if i != old))
        fresh = _connect(group.brokers[new].url)
        fresh_channel = fresh.channel()
        fresh_channel.confirm_delivery()
        fresh_channel.basic_publish("", QUEUE, b"2", pika.BasicProperties(delivery_mode=2))
    finally:
        group.brokers[old].process.send_signal(signal.SIGCONT)
    with pytest.raises((pika.exceptions.NackError, AMQPError)):
        channel.basic_publish("", QUEUE, b"stale", pika.BasicProperties(delivery_mode=2))
    group.brokers[old].wait_event("broker_fenced", timeout=30)
    assert _masters_confirming(group) == [new]
    # The resumed old master's replication may demote the new one for a moment (Berkeley DB's
    # DUPMASTER): publishes in that window are nacked, never lost; then it reclaims mastership.
    for _ in range(40):
        try:
            fresh_channel.basic_publish("", QUEUE, b"3", pika.BasicProperties(delivery_mode=2))
            break
        except pika.exceptions.NackError:
            time.sleep(0.25)
    else:
        raise AssertionError("the new master never confirmed again")
    fresh.close()
    assert set(_drain(group.brokers[new].url)) == {1, 2, 3}


def test_stat_ha_shows_epoch_quorum_and_replicas_with_their_lag(group: HAGroup) -> None:
    group.start()
    master = group.master()
    url = group.brokers[master].url
    deadline = time.monotonic() + 30
    while True:
        [row] = cli_json(url, "stat", "ha")
        details = row["details"]
        if len(details["members"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (row["role"], row["epoch"], row["mode"]) == ("master", 1, "zookeeper")
    assert details["quorum"] == 2 and details["replicas"] == 3
    assert details["zk_path"] == group.zk_path
    assert details["master"]["url"] == f"amqp://127.0.0.1:{group.brokers[master].port}/"
    assert len(details["members"]) == 2
    for member in details["members"]:
        assert member["connected"] is True
        assert member["lag_bytes"] is not None and member["lag_bytes"] >= 0


def test_kill_one_replica_keeps_confirming_and_it_catches_up_on_return(group: HAGroup) -> None:
    group.start()
    master = group.master()
    url = group.brokers[master].url
    _declare(url)
    group.wait_caught_up(master)
    replica = next(i for i in range(3) if i != master)
    group.brokers[replica].kill()
    connection = _connect(url)
    channel = connection.channel()
    channel.confirm_delivery()
    for number in range(2000):  # 2 of 3 are up: every publish is confirmed
        channel.basic_publish(
            "", QUEUE, str(number).encode(), pika.BasicProperties(delivery_mode=2)
        )
    connection.close()
    assert not [e for e in group.brokers[master].events() if e["event"] == "ha_zk.below_quorum"]
    group.brokers[replica].start(ready_event="broker_listening")
    caught_up = group.brokers[replica].wait_event("ha_zk.caught_up", timeout=60)
    promoted = [e for e in group.brokers[master].events() if e["event"] == "ha_zk.promoted"]
    assert caught_up["epoch"] == promoted[-1]["epoch"]  # it follows the master we published to
    # The returned replica holds the messages: make it master (kill the master) and count.
    group.brokers[master].kill()
    new = group.master(among=tuple(i for i in range(3) if i != master))
    assert sorted(_drain(group.brokers[new].url)) == list(range(2000))


def test_zookeeper_leader_killed_in_a_three_server_ensemble(
    tmp_path: Path, zk_ensemble: ZooKeeperEnsemble, zk_path: str
) -> None:
    group = HAGroup(tmp_path, zk_ensemble.hosts, zk_path)
    try:
        group.start()
        master = group.master()
        url = group.brokers[master].url
        _declare(url)
        connection = _connect(url)
        channel = connection.channel()
        channel.confirm_delivery()
        persistent = pika.BasicProperties(delivery_mode=2)
        for number in range(100):
            channel.basic_publish("", QUEUE, str(number).encode(), persistent)
        connection.close()
        zk_ensemble.leader().kill()
        # The group serves again (the same master if kazoo moved its session in time, or a new
        # one after fencing) and one broker at most accepts clients as master.
        deadline = time.monotonic() + 60
        while not (serving := _masters_confirming(group)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(serving) == 1, serving
        url = group.brokers[serving[0]].url
        for _ in range(40):
            try:
                connection = _connect(url)
                channel = connection.channel()
                channel.confirm_delivery()
                channel.basic_publish("", QUEUE, b"100", persistent)
                connection.close()
                break
            except (AMQPError, OSError):
                time.sleep(0.25)
        assert set(_drain(url)) == set(range(101))
    finally:
        group.stop()
