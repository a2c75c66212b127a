"""kombu survives master kills with failover URLs (``amqp://h1;amqp://h2;...``).

The application code is kombu's documented failover recipe (userguide "Automatic Failover"):
one ``Connection`` given every broker separated by ``;``; the publisher publishes with
``retry=True`` and a ``retry_policy`` (``Connection.ensure`` underneath: on a connection error
it reconnects to the next URL and publishes the message again), with publisher confirms
(``confirm_publish``); the consumer is a ``ConsumerMixin``, whose ``run`` reconnects through
``ensure_connection``. A standby's 320 refusal is a recoverable connection error for py-amqp,
so kombu moves on to the next URL. Nothing here knows about plugmq.
"""

from __future__ import annotations

import threading

from kombu import Connection, Queue
from kombu.mixins import ConsumerMixin
from support.failover_clients import kill_points, run_through_kills
from support.failover_group import FailoverGroup
from support.ledger import Ledger

QUEUE = Queue("kombu-failover", durable=True)
TOTAL = 300
RETRY_POLICY = {"max_retries": 50, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.5}


def failover_url(group: FailoverGroup) -> str:
    """Every member, ``;``-separated, default vhost (kombu's ``//``)."""
    return ";".join(f"amqp://guest:guest@127.0.0.1:{m.port}//" for m in group.members)


def connection(url: str) -> Connection:
    """A kombu connection with publisher confirms and failover through the list."""
    return Connection(
        url,
        transport_options={"confirm_publish": True},
        connect_timeout=5,
        failover_strategy="round-robin",
    )


def publisher(url: str, ledger: Ledger) -> None:
    """Publish m0..m{TOTAL-1} persistently; ``publish`` returns once the broker confirmed."""
    with connection(url) as conn:
        producer = conn.Producer()
        for number in range(TOTAL):
            message_id = f"m{number}"
            ledger.publish(message_id)
            producer.publish(
                {"n": number},
                routing_key=QUEUE.name,
                declare=[QUEUE],
                delivery_mode=2,
                message_id=message_id,
                retry=True,
                retry_policy=RETRY_POLICY,
            )
            ledger.confirm(message_id)


class Worker(ConsumerMixin):
    """kombu's consumer recipe: ack each message, reconnect on connection errors."""

    def __init__(self, conn: Connection, ledger: Ledger, stop: threading.Event) -> None:
        self.connection = conn
        self.ledger = ledger
        self.stop = stop

    def get_consumers(self, consumer_class, channel) -> list:
        """One consumer of the queue, 20 unacked at most."""
        return [consumer_class([QUEUE], callbacks=[self.on_message], prefetch_count=20)]

    def on_message(self, body, message) -> None:
        """Record the delivery, ack, record the ack."""
        message_id = message.properties["message_id"]
        self.ledger.deliver(message_id)
        message.ack()
        self.ledger.ack(message_id)

    def on_iteration(self) -> None:
        """Stop when the test says so."""
        self.should_stop = self.stop.is_set()


def test_kombu_failover_urls_survive_two_master_kills(toy_group: FailoverGroup) -> None:
    ledger = toy_group.ledger
    assert ledger is not None
    url = failover_url(toy_group)

    def consume(stop: threading.Event) -> None:
        with connection(url) as conn:
            Worker(conn, ledger, stop).run()

    report = run_through_kills(
        toy_group,
        lambda stop: publisher(url, ledger),
        consume,
        total=TOTAL,
        kill_at=kill_points(TOTAL, 2),
    )
    assert report.confirmed == TOTAL
    assert toy_group.takeovers == 2
