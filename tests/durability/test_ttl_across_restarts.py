"""Message TTLs count from the original publish across a restart (issue 17 item 11).

RabbitMQ stores a persistent message's expiry with it, so after a restart it expires at the
deadline it had, not a full TTL later. Checked for ``x-message-ttl``, the ``expiration``
property, and a queue whose tail is paged out to the store (its messages' TTLs come from the
store when they are read back), after a clean stop and after kill -9. The TTL is a few
seconds: the broker must restart well inside it, and "not later" must be told apart from
"a full TTL after the restart".
"""

from __future__ import annotations

import time

import pika
import pytest
from support.broker_process import BrokerProcess, broker_process
from support.polling import wait_for

TTL = 6.0
#: When the broker is restarted, after the first publish.
RESTART_AFTER = 2.5
#: How late after the original deadline the queues may still hold the messages (timer and
#: polling slack; a TTL that restarted would leave them there RESTART_AFTER seconds longer).
SLACK = 1.5
QUEUES = {
    "per-queue": ({"x-message-ttl": int(TTL * 1000)}, None, 3),
    "per-message": ({}, str(int(TTL * 1000)), 3),
    "paged": ({"x-message-ttl": int(TTL * 1000)}, None, 200),
}


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def counts(broker: BrokerProcess) -> dict[str, int]:
    """Messages ready on each test queue."""
    with connect(broker) as connection:
        channel = connection.channel()
        return {
            name: channel.queue_declare(name, passive=True).method.message_count for name in QUEUES
        }


def publish_everything(broker: BrokerProcess) -> float:
    """Declare the queues and publish confirmed persistent messages; return the wall time."""
    with connect(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        published = time.time()
        for name, (arguments, expiration, number) in QUEUES.items():
            channel.queue_declare(name, durable=True, arguments=arguments)
            properties = pika.BasicProperties(delivery_mode=2, expiration=expiration)
            for index in range(number):
                channel.basic_publish("", name, b"x" * 1000 + b"%d" % index, properties)
    return published


@pytest.mark.parametrize("stop", ["clean", "kill -9"])
def test_ttl_counts_from_the_original_publish(tmp_path, stop: str) -> None:
    # A small per-queue memory limit makes "paged" keep most of its messages in the store.
    broker = broker_process(tmp_path, "--queue-max-memory", "20000").start()
    try:
        published = publish_everything(broker)
        assert counts(broker) == {name: spec[2] for name, spec in QUEUES.items()}
        wait_for(lambda: time.time() >= published + RESTART_AFTER, timeout=RESTART_AFTER + 1)
        if stop == "clean":
            assert broker.stop() == 0
        else:
            broker.kill()
        broker.restart()
        restarted = time.time()
        assert restarted < published + TTL - 1, "the restart took too long for this test"
        assert counts(broker) == {name: spec[2] for name, spec in QUEUES.items()}, (
            "messages expired before their deadline"
        )
        wait_for(lambda: not any(counts(broker).values()), timeout=TTL + RESTART_AFTER + 5)
        expired = time.time()
        assert expired <= published + TTL + SLACK, (
            f"expired {expired - published:.1f} s after publishing, with a TTL of {TTL} s: "
            "the TTL restarted with the broker"
        )
    finally:
        broker.stop()
