"""An in-broker forwarder (tests/inbroker/plugins/forwarder.py) under kill -9: acked transfer.

A real broker process with the Berkeley DB store runs the forwarder plugin (loaded with
``--load-module``), which moves queue ``src`` of vhost ``/a`` to queue ``dst`` of vhost ``/b``
and acknowledges a source message only once its copy is durable. A pika publisher with
confirms feeds ``/a`` while the broker is killed with SIGKILL at seeded random moments and
restarted on the same data directory. At the end every confirmed message must be in ``/b``
(at least once: a crash between the copy's write and the source's ack forwards it again, and
the duplicates are counted and reported), each carrying the forwarder's header.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pika
import pika.exceptions
from support.admin_cli import cli_ok
from support.broker_process import BrokerProcess, broker_process
from support.polling import wait_for

PLUGIN = Path(__file__).parent / "plugins" / "forwarder.py"
SEED = int(os.environ.get("PLUGMQ_TEST_SEED", "20261205"))
KILLS = 4
PERSISTENT = pika.BasicProperties(delivery_mode=2)


def _connect(broker: BrokerProcess, vhost: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", broker.port, virtual_host=vhost)
    )


def _forwarder_started(broker: BrokerProcess) -> bool:
    return any(e.get("event") == "forwarder_started" for e in broker.events()[broker.events_seen :])


def _publish_until_killed(
    broker: BrokerProcess, round_number: int, delay: float, confirmed: set[bytes]
) -> int:
    """Publish confirmed persistent messages to /a until the broker is killed after ``delay``."""
    killer = threading.Timer(delay, broker.kill)
    published = 0
    connection = _connect(broker, "/a")
    channel = connection.channel()
    channel.queue_declare("src", durable=True)
    channel.confirm_delivery()
    killer.start()
    try:
        while True:
            body = b"r%d-%d" % (round_number, published)
            published += 1
            channel.basic_publish("", "src", body, PERSISTENT)
            confirmed.add(body)  # basic_publish returned: the broker confirmed it
    except pika.exceptions.AMQPError:
        pass  # the broker died under the publisher: this one's fate is unknown
    finally:
        killer.join()
    return published


def _drain(broker: BrokerProcess, collected: list[bytes]) -> int:
    """Take what is in /b's ``dst`` now (checking each copy's header); return its depth left."""
    with _connect(broker, "/b") as connection:
        channel = connection.channel()
        while (got := channel.basic_get("dst", auto_ack=True))[0] is not None:
            _, properties, body = got
            assert properties.headers == {"x-forwarded-from": "/a"}, properties.headers
            pass
            collected.append(body)
        return channel.queue_declare("dst", passive=True).method.message_count


def _collect(broker: BrokerProcess, confirmed: set[bytes], timeout: float) -> list[bytes]:
    """Drain /b until every confirmed message arrived and nothing is left, or ``timeout``."""
    collected: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = _drain(broker, collected)
        if not left and confirmed <= set(collected):
            break
        time.sleep(0.1)  # bounded by the deadline: copies still being made durable
    return collected


def _source_depth(broker: BrokerProcess) -> int:
    with _connect(broker, "/a") as connection:
        return connection.channel().queue_declare("src", passive=True).method.message_count


def test_forwarded_messages_survive_kill_9_at_least_once(tmp_path: Path, record_property) -> None:
    rng = random.Random(SEED)
    broker = broker_process(tmp_path, "--load-module", str(PLUGIN)).start()
    try:
        for vhost in ("/a", "/b"):
            cli_ok(broker.url, "vhost", "add", vhost)
            cli_ok(broker.url, "permissions", "set", "guest", ".*", ".*", ".*", "--vhost", vhost)
        wait_for(lambda: _forwarder_started(broker), timeout=10)
        confirmed: set[bytes] = set()
        published = 0
        for round_number in range(KILLS):
            delay = rng.uniform(0.2, 1.5)
            published += _publish_until_killed(broker, round_number, delay, confirmed)
            broker.restart()
            wait_for(lambda: _forwarder_started(broker), timeout=20)
        wait_for(lambda: _source_depth(broker) == 0, timeout=60)
        collected = _collect(broker, confirmed, timeout=30)
    finally:
        broker.stop()
    counts = Counter(collected)
    duplicates = sum(n - 1 for n in counts.values())
    record_property("confirmed", len(confirmed))
    record_property("duplicates", duplicates)
    print(  # the report the brief asks for: how often at-least-once meant twice
        f"seed {SEED}: {published} published, {len(confirmed)} confirmed, "
        f"{len(collected)} forwarded, {duplicates} duplicates"
    )
    assert len(confirmed) > 100, "the rounds must move real traffic"
    assert not confirmed - set(counts), f"seed {SEED}: lost {len(confirmed - set(counts))}"
    assert set(counts) <= {b"r%d-%d" % (r, n) for r in range(KILLS) for n in range(published)}
