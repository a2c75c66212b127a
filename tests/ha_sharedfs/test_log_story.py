"""The seed's log story (ActiveMQ shared file system master/slave), asserted on the logs.

A standby says the data directory is locked by another broker and names it (host, pid, since,
URL); when the master is killed, the standby takes the lock, recovers the store with progress
logged and serves what the master had confirmed; the old master, restarted, becomes a standby
of the new one without touching the store.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pika
import pytest
from support.sharedfs import PERSISTENT, SharedFSGroup, drain

BACKLOG = 2000


def advertised(group: SharedFSGroup, timeout: float = 10.0) -> list[str]:
    """``cluster_urls`` as a new client sees it, once the master has read every member (it
    refreshes the list at each renewal, so a member that just registered may be missing)."""
    deadline = time.monotonic() + timeout
    while True:
        connection = pika.BlockingConnection(group.parameters())
        urls = list(connection._impl.server_properties["cluster_urls"])
        connection.close()
        if len(urls) == len(group.brokers) or time.monotonic() > deadline:
            return sorted(urls)


@pytest.mark.timeout(90)
def test_locked_standby_takeover_recovery_and_the_old_master_as_standby(tmp_path: Path) -> None:
    group = SharedFSGroup(tmp_path, size=2, lease=2.0)
    master, standby = group.start(), group.brokers[1]
    try:
        waiting = standby.wait_event("ha_standby_waiting")
        assert f"data directory {group.data_dir} is locked by another broker" in waiting["message"]
        assert waiting["holder_pid"] == master.process.pid
        assert waiting["holder_host"] == socket.gethostname()
        assert waiting["holder_url"] == f"amqp://127.0.0.1:{master.port}/"
        assert waiting["epoch"] == 1 and waiting["since"] > 0
        assert not [e for e in standby.events() if e.get("event") == "store_opening"]

        connection = pika.BlockingConnection(group.parameters())
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("story", durable=True)
        bodies = [f"m{i}".encode() for i in range(BACKLOG)]
        for body in bodies:
            channel.basic_publish("", "story", body, PERSISTENT)
        connection.close()
        assert advertised(group) == sorted(f"amqp://127.0.0.1:{b.port}/" for b in group.brokers)

        master.kill()
        taking = standby.wait_event("ha_taking_over", epoch=2)
        assert taking["reason"] == "its holder let go of master.lock"
        assert taking["locked"] is True
        standby.wait_event("recovery_progress")
        assert standby.wait_event("recovery_done")["messages"] == BACKLOG
        standby.wait_event("broker_active", epoch=2)

        master.start(ready_event="broker_listening")
        again = master.wait_event("ha_standby_waiting")
        assert again["holder_pid"] == standby.process.pid and again["epoch"] == 2
        since_restart = master.events()[master.events_seen :]
        assert not [e for e in since_restart if e.get("event") == "store_opening"]
        assert drain(group.parameters(), "story") == bodies
    finally:
        group.stop()
