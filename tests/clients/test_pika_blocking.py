"""pika's BlockingConnection against a real broker process: the everyday client path."""

from __future__ import annotations

import time

import pika
import pytest
from support.broker_process import BrokerProcess


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", broker.port, connection_attempts=1)
    )


def drain(channel, queue: str, count: int) -> list[bytes]:
    bodies = []
    for method, _props, body in channel.consume(queue, inactivity_timeout=5):
        assert method is not None, f"only {len(bodies)} of {count} messages arrived"
        bodies.append(body)
        channel.basic_ack(method.delivery_tag)
        if len(bodies) == count:
            break
    channel.cancel()
    return bodies


def test_publish_with_confirms_then_consume_in_order(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.confirm_delivery()
        for number in range(200):
            channel.basic_publish("", queue, b"m%d" % number, mandatory=True)
        assert drain(channel, queue, 200) == [b"m%d" % n for n in range(200)]


def test_unroutable_mandatory_publish_is_returned(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.UnroutableError):
            channel.basic_publish("amq.direct", "nowhere", b"x", mandatory=True)


def test_topic_exchange_routes_by_pattern(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("test.topic", "topic")
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "test.topic", "sports.#")
        for key in ("sports.football", "news.world", "sports", "sports.a.b"):
            channel.basic_publish("test.topic", key, key.encode())
        received = []
        while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
            received.append(got[2])
        assert received == [b"sports.football", b"sports", b"sports.a.b"]


def test_nack_with_requeue_redelivers_in_original_order(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        for number in range(3):
            channel.basic_publish("", queue, b"%d" % number)
        tags = [channel.basic_get(queue)[0].delivery_tag for _ in range(3)]
        channel.basic_nack(tags[-1], multiple=True, requeue=True)
        again = [channel.basic_get(queue) for _ in range(3)]
        assert [body for _, _, body in again] == [b"0", b"1", b"2"]
        assert all(method.redelivered for method, _, _ in again)


def test_unacked_messages_return_when_the_channel_closes(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("requeue-on-close", auto_delete=False).method.queue
        channel.queue_purge(queue)
        channel.basic_publish("", queue, b"keep me")
        other = connection.channel()
        method, _, body = other.basic_get(queue)
        assert body == b"keep me" and not method.redelivered
        other.close()
        method, _, body = channel.basic_get(queue, auto_ack=True)
        assert body == b"keep me" and method.redelivered
        channel.queue_delete(queue)


def test_prefetch_limits_unacked_deliveries(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        for number in range(10):
            channel.basic_publish("", queue, b"%d" % number)
        channel.basic_qos(prefetch_count=3)
        delivered = []
        channel.basic_consume(queue, lambda ch, m, p, b: delivered.append(m))
        connection.process_data_events(time_limit=0.5)
        assert len(delivered) == 3
        channel.basic_ack(delivered[-1].delivery_tag, multiple=True)
        connection.process_data_events(time_limit=0.5)
        assert len(delivered) == 6


def test_large_message_spans_many_frames(shared_broker: BrokerProcess) -> None:
    body = bytes(range(256)) * 4096 * 4  # 4 MiB
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.confirm_delivery()
        channel.basic_publish("", queue, body)
        assert channel.basic_get(queue, auto_ack=True)[2] == body


def test_channel_error_leaves_connection_usable(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
            channel.queue_declare("does-not-exist", passive=True)
        assert raised.value.reply_code == 404
        channel = connection.channel()
        channel.exchange_declare("redeclared", "direct")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
            channel.exchange_declare("redeclared", "fanout")
        assert raised.value.reply_code == 406
        assert "inequivalent arg 'type'" in raised.value.reply_text
        assert connection.channel().queue_declare("", exclusive=True).method.queue


def test_exclusive_queue_of_another_connection_is_locked(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as owner, connect(shared_broker) as other:
        queue = owner.channel().queue_declare("", exclusive=True).method.queue
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
            other.channel().basic_consume(queue, lambda *args: None)
        assert raised.value.reply_code == 405


def test_exclusive_queue_is_deleted_with_its_connection(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as owner:
        queue = owner.channel().queue_declare("", exclusive=True).method.queue
    with connect(shared_broker) as other:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
            other.channel().queue_declare(queue, passive=True)
        assert raised.value.reply_code == 404


def test_wrong_password_is_refused(shared_broker: BrokerProcess) -> None:
    parameters = pika.ConnectionParameters(
        "127.0.0.1",
        shared_broker.port,
        credentials=pika.PlainCredentials("guest", "wrong"),
        connection_attempts=1,
    )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as raised:
        pika.BlockingConnection(parameters)
    assert "ACCESS_REFUSED" in str(raised.value)


def test_transactions_publish_on_commit_only(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.tx_select()
        channel.basic_publish("", queue, b"rolled back")
        channel.tx_rollback()
        channel.basic_publish("", queue, b"committed")
        assert channel.queue_declare(queue, passive=True).method.message_count == 0
        channel.tx_commit()
        assert channel.basic_get(queue, auto_ack=True)[2] == b"committed"
        assert channel.basic_get(queue)[0] is None


def test_headers_exchange_routes_on_all_and_any(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("test.blocking.headers", "headers", auto_delete=True)
        match_all = channel.queue_declare("", exclusive=True).method.queue
        match_any = channel.queue_declare("", exclusive=True).method.queue
        binding = {"format": "pdf", "type": "report"}
        channel.queue_bind(
            match_all, "test.blocking.headers", arguments={"x-match": "all", **binding}
        )
        channel.queue_bind(
            match_any, "test.blocking.headers", arguments={"x-match": "any", **binding}
        )
        for text, headers in (
            ("both", {"format": "pdf", "type": "report", "extra": 1}),
            ("format only", {"format": "pdf"}),
            ("wrong value", {"format": "zip", "type": "log"}),
            ("no headers", None),
        ):
            channel.basic_publish(
                "test.blocking.headers",
                "ignored",
                text.encode(),
                pika.BasicProperties(headers=headers),
            )
        assert drain(channel, match_all, 1) == [b"both"]
        assert drain(channel, match_any, 2) == [b"both", b"format only"]
        assert channel.basic_get(match_any)[0] is None


def test_exchange_to_exchange_bindings_chain(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("test.blocking.e2e.src", "direct")
        channel.exchange_declare("test.blocking.e2e.dst", "topic", auto_delete=True)
        channel.exchange_bind("test.blocking.e2e.dst", "test.blocking.e2e.src", "orders.eu")
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "test.blocking.e2e.dst", "orders.*")
        channel.confirm_delivery()
        channel.basic_publish("test.blocking.e2e.src", "orders.eu", b"eu order", mandatory=True)
        with pytest.raises(pika.exceptions.UnroutableError):
            channel.basic_publish("test.blocking.e2e.src", "orders.us", b"us", mandatory=True)
        channel.exchange_unbind("test.blocking.e2e.dst", "test.blocking.e2e.src", "orders.eu")
        with pytest.raises(pika.exceptions.UnroutableError):
            channel.basic_publish("test.blocking.e2e.src", "orders.eu", b"gone", mandatory=True)
        assert channel.basic_get(queue, auto_ack=True)[2] == b"eu order"
        assert channel.basic_get(queue)[0] is None
        channel.exchange_delete("test.blocking.e2e.src")


def test_queue_deleted_under_a_consumer_calls_the_cancel_callback(
    shared_broker: BrokerProcess,
) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("blocking-deleted-under-consumer").method.queue
        cancelled, delivered = [], []
        channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
        tag = channel.basic_consume(queue, lambda ch, m, p, b: delivered.append(b), auto_ack=True)
        channel.basic_publish("", queue, b"before")
        connection.channel().queue_delete(queue)
        deadline = time.monotonic() + 5
        while not cancelled and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        assert delivered == [b"before"]
        assert cancelled == [tag]
        assert channel.consumer_tags == []
        assert channel.is_open


def test_short_heartbeat_keeps_an_idle_connection_open(shared_broker: BrokerProcess) -> None:
    parameters = pika.ConnectionParameters(
        "127.0.0.1", shared_broker.port, heartbeat=1, connection_attempts=1
    )
    with pika.BlockingConnection(parameters) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        connection.sleep(3.5)  # several heartbeat intervals with no other traffic
        channel.basic_publish("", queue, b"still connected")
        assert channel.basic_get(queue, auto_ack=True)[2] == b"still connected"


def test_connection_close_and_reopen_keeps_shared_queue(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.queue_declare("blocking-reopen")
        channel.queue_purge("blocking-reopen")
        channel.confirm_delivery()
        for number in range(3):
            channel.basic_publish("", "blocking-reopen", b"%d" % number)
    assert connection.is_closed
    with connect(shared_broker) as connection:
        channel = connection.channel()
        assert channel.queue_declare("blocking-reopen", passive=True).method.message_count == 3
        assert drain(channel, "blocking-reopen", 3) == [b"0", b"1", b"2"]
        assert channel.queue_delete("blocking-reopen").method.message_count == 0
