"""A master paused past its lease (SIGSTOP, then SIGCONT) confirms and accepts nothing once a
standby took over; a clean shutdown hands over at once.

On a local disk a stopped process keeps its POSIX lock, so the standby takes over by the
lease (unchanged for a lease time) without the lock; the old master, resumed, finds its lease
gone (or expired by its own monotonic clock) and fences. The publish it had in flight must
not be confirmed, new clients are sent to the new master, and what the new master confirmed
survives a further failover (the old master wrote nothing into the store meanwhile).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest
from support.sharedfs import PERSISTENT, SharedFSGroup, drain, log_time

LEASE = 2.0


def publish_confirmed(parameters, queue: str, bodies: list[bytes]) -> None:
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True)
        for body in bodies:
            channel.basic_publish("", queue, body, PERSISTENT)
    finally:
        connection.close()


@pytest.mark.timeout(120)
def test_a_paused_master_confirms_nothing_after_the_takeover(tmp_path: Path) -> None:
    group = SharedFSGroup(tmp_path, size=3, lease=LEASE)
    old = group.start()
    try:
        direct = pika.ConnectionParameters("127.0.0.1", old.port, heartbeat=0)
        connection = pika.BlockingConnection(direct)
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("paused", durable=True)
        before = [f"before-{i}".encode() for i in range(10)]
        for body in before:
            channel.basic_publish("", "paused", body, PERSISTENT)

        os.kill(old.process.pid, signal.SIGSTOP)
        outcome: list[object] = []

        def publish_while_paused() -> None:
            try:
                channel.basic_publish("", "paused", b"during-pause", PERSISTENT)
                outcome.append("confirmed")
            except (pika.exceptions.AMQPError, OSError) as error:
                outcome.append(error)

        publisher = threading.Thread(target=publish_while_paused, daemon=True)
        publisher.start()
        new, active = group.wait_master(after_epoch=1)
        assert new is not old
        taking = new.wait_event("ha_taking_over", consume=False)
        assert "not renewed" in taking["reason"] and taking["locked"] is False
        after = [f"after-{i}".encode() for i in range(10)]
        publish_confirmed(group.parameters(), "paused", after)

        resumed_at = time.time()
        os.kill(old.process.pid, signal.SIGCONT)
        fenced = old.wait_event("broker_fenced", timeout=LEASE * 3)
        assert log_time(fenced) >= resumed_at - 0.01
        publisher.join(15)
        assert outcome and outcome[0] != "confirmed", "the paused master confirmed a publish"

        new_url = f"amqp://127.0.0.1:{new.port}/"
        old.wait_event("ha_standby_waiting", holder_url=new_url)
        with pytest.raises(pika.exceptions.AMQPConnectionError) as refused:
            pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", old.port))
        assert new_url in repr(refused.value)

        # What the new master confirmed survives the next failover: the resumed master did
        # not write into the store the new master recovered and writes.
        new.kill()
        group.wait_master(after_epoch=active["epoch"])
        left = set(drain(group.parameters(), "paused"))
        assert set(before) | set(after) <= left
    finally:
        group.stop()


@pytest.mark.timeout(60)
def test_a_clean_shutdown_hands_over_at_once(tmp_path: Path) -> None:
    group = SharedFSGroup(tmp_path, size=2, lease=LEASE)
    master = group.start()
    standby = group.brokers[1]
    try:
        publish_confirmed(group.parameters(), "handover", [b"kept"])
        assert master.stop() == 0
        new, _ = group.wait_master(after_epoch=1)
        assert new is standby
        taking = standby.wait_event("ha_taking_over", consume=False)
        # A handover, not a takeover by lease expiry (which would say the lease lapsed); how
        # fast it is is measured by benchmarks/ha_failover.py, not asserted on a busy machine.
        assert taking["reason"] == "the master released it"
        released = [e for e in master.events() if e.get("event") == "ha_lease_released"]
        assert released and released[-1]["clean"] is True
        assert drain(group.parameters(), "handover") == [b"kept"]
    finally:
        group.stop()
