"""kombu 5 over the py-amqp transport against a real broker process, unchanged."""

from __future__ import annotations

import contextlib
import json
import time
import uuid

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from support.broker_process import BrokerProcess

TIMEOUT = 10.0


def kombu_url(broker: BrokerProcess) -> str:
    """The py-amqp transport URL of ``broker`` (default vhost ``/``)."""
    return f"amqp://guest:guest@127.0.0.1:{broker.port}//"


def unique(prefix: str) -> str:
    """A name no other test on the shared broker uses."""
    return f"kombu.{prefix}.{uuid.uuid4().hex[:8]}"


def drain_until(connection: Connection, received: list, count: int) -> None:
    """Run ``drain_events`` until ``received`` holds ``count`` items (bounded)."""
    while len(received) < count:
        try:
            connection.drain_events(timeout=TIMEOUT)
        except TimeoutError:
            pytest.fail(f"only {len(received)} of {count} messages arrived")


def test_producer_consumer_round_trip(shared_broker: BrokerProcess) -> None:
    exchange = Exchange(unique("tasks"), type="topic", durable=False)
    queue = Queue(unique("q"), exchange, routing_key="jobs.*", auto_delete=True, durable=False)
    with Connection(kombu_url(shared_broker), connect_timeout=TIMEOUT) as connection:
        assert connection.transport.driver_type == "amqp"  # py-amqp, not another transport
        producer = Producer(connection.channel(), exchange=exchange)
        received: list[tuple] = []

        def on_message(body, message) -> None:
            received.append(
                (body, message.delivery_info["routing_key"], message.content_type, message.headers)
            )
            message.ack()

        with Consumer(connection.channel(), [queue], callbacks=[on_message], prefetch_count=2):
            for number in range(5):
                producer.publish(
                    {"n": number, "text": "héllo"},
                    routing_key=f"jobs.{number}",
                    serializer="json",
                    headers={"attempt": number},
                    declare=[queue],
                )
            producer.publish({"n": "skipped"}, routing_key="other.key", serializer="json")
            drain_until(connection, received, 5)
        assert [item[0] for item in received] == [{"n": n, "text": "héllo"} for n in range(5)]
        assert [item[1] for item in received] == [f"jobs.{n}" for n in range(5)]
        assert {item[2] for item in received} == {"application/json"}
        assert [item[3]["attempt"] for item in received] == list(range(5))


def test_requeue_and_reject(shared_broker: BrokerProcess) -> None:
    queue = Queue(
        unique("requeue"),
        Exchange(unique("direct"), type="direct"),
        routing_key="r",
        auto_delete=False,
        durable=False,
    )
    with Connection(kombu_url(shared_broker), connect_timeout=TIMEOUT) as connection:
        channel = connection.channel()
        bound = queue(channel)
        bound.declare()
        Producer(channel).publish("first", exchange=queue.exchange, routing_key="r")
        message = bound.get(no_ack=False)
        assert message.payload == "first" and not message.delivery_info["redelivered"]
        message.requeue()
        message = bound.get(no_ack=False)
        assert message.payload == "first" and message.delivery_info["redelivered"]
        message.reject()
        assert bound.get() is None
        assert bound.delete() == 0


def test_simple_queue_round_trip(shared_broker: BrokerProcess) -> None:
    name = unique("simple")
    with Connection(kombu_url(shared_broker), connect_timeout=TIMEOUT) as connection:
        simple = connection.SimpleQueue(name)
        for number in range(3):
            simple.put({"number": number})
        got = []
        for _ in range(3):
            message = simple.get(block=True, timeout=TIMEOUT)
            got.append(message.payload)
            message.ack()
        assert got == [{"number": n} for n in range(3)]
        with pytest.raises(simple.Empty):
            simple.get(block=True, timeout=0.3)
        assert simple.qsize() == 0
        simple.close()
        connection.default_channel.queue_delete(name)


def test_simple_buffer_and_reconnect(shared_broker: BrokerProcess) -> None:
    name = unique("buffer")
    with Connection(kombu_url(shared_broker), connect_timeout=TIMEOUT) as connection:
        buffer = connection.SimpleBuffer(name)  # no-ack, non-durable, auto-delete
        buffer.put("fire and forget")
        assert buffer.get(timeout=TIMEOUT).payload == "fire and forget"
        buffer.close()
    # A second connection to the same broker (what kombu's pools do after a drop).
    with Connection(kombu_url(shared_broker), connect_timeout=TIMEOUT) as connection:
        connection.ensure_connection(max_retries=1)
        simple = connection.SimpleQueue(name + ".again")
        simple.put(
            b"\x00\x01binary",
            serializer=None,
            content_type="application/data",
            content_encoding="binary",
        )
        message = simple.get(timeout=TIMEOUT)
        assert message.body == b"\x00\x01binary"
        message.ack()
        simple.close()
        connection.default_channel.queue_delete(name + ".again")


def test_confirm_publish_and_returned_messages(shared_broker: BrokerProcess) -> None:
    queue = Queue(
        unique("confirmed"),
        Exchange(unique("confirm-ex"), type="direct"),
        routing_key="yes",
        auto_delete=False,
        durable=False,
    )
    returned: list[tuple] = []

    def on_return(exception, exchange, routing_key, message) -> None:
        returned.append(
            (
                exception.reply_code,
                exception.reply_text,
                exchange,
                routing_key,
                json.loads(message.body),
            )
        )

    url = kombu_url(shared_broker)
    with Connection(
        url, connect_timeout=TIMEOUT, transport_options={"confirm_publish": True}
    ) as connection:
        channel = connection.channel()
        bound = queue(channel)
        bound.declare()
        producer = Producer(channel, exchange=queue.exchange, on_return=on_return)
        for number in range(5):
            producer.publish({"n": number}, routing_key="yes", mandatory=True)
        producer.publish({"n": "lost"}, routing_key="no", mandatory=True)
        # The return arrives before the confirm that publish waited for; drain it.
        deadline = time.monotonic() + TIMEOUT
        while not returned and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=0.2)
        assert returned == [(312, "NO_ROUTE", queue.exchange.name, "no", {"n": "lost"})]
        got = []
        while (message := bound.get(no_ack=True)) is not None:
            got.append(message.payload)
        assert got == [{"n": n} for n in range(5)]
        bound.delete()
