"""Durable queues and persistent messages survive kill -9 (Qpid BDB msgstore's promise)."""

from __future__ import annotations

import contextlib

import pika
from support.broker_process import BrokerProcess, broker_process

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def test_confirmed_persistent_messages_survive_kill_9(durable_broker: BrokerProcess) -> None:
    with connect(durable_broker) as connection:
        channel = connection.channel()
        channel.queue_declare("abc", durable=True)
        channel.exchange_declare("orders", "topic", durable=True)
        channel.queue_bind("abc", "orders", "order.#")
        channel.confirm_delivery()
        for number in range(100):
            channel.basic_publish("orders", "order.new", b"%d" % number, PERSISTENT)
        channel.basic_publish("", "abc", b"transient")  # not persistent: must not survive
    durable_broker.kill()
    durable_broker.restart()
    with connect(durable_broker) as connection:
        channel = connection.channel()
        bodies = []
        while (got := channel.basic_get("abc", auto_ack=True))[0] is not None:
            bodies.append(got[2])
            assert got[0].redelivered, "recovered after kill -9 without redelivered=True"
        assert bodies == [b"%d" % n for n in range(100)]
        channel.confirm_delivery()
        channel.basic_publish("orders", "order.x", b"routed after restart", PERSISTENT)
        assert channel.basic_get("abc", auto_ack=True)[2] == b"routed after restart"


def test_non_durable_queue_does_not_survive(durable_broker: BrokerProcess) -> None:
    with connect(durable_broker) as connection:
        channel = connection.channel()
        channel.queue_declare("gone", durable=False)
        channel.confirm_delivery()
        channel.basic_publish("", "gone", b"x", PERSISTENT)
    durable_broker.kill()
    durable_broker.restart()
    with connect(durable_broker) as connection:
        channel = connection.channel()
        try:
            channel.queue_declare("gone", passive=True)
            raise AssertionError("a non-durable queue must not be recovered")
        except pika.exceptions.ChannelClosedByBroker as closed:
            assert closed.reply_code == 404


def deliver_six_ack_four(broker: BrokerProcess) -> pika.BlockingConnection:
    """Ten persistent messages on ``work``; 0..5 delivered, 0..3 acked (committed).

    Returns the consumer's connection, still open: 4 and 5 stay delivered, unacknowledged.
    """
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare("work", durable=True)
    channel.confirm_delivery()
    for number in range(10):
        channel.basic_publish("", "work", b"%d" % number, PERSISTENT)
    consumer = connection.channel()
    consumer.tx_select()
    tags = [consumer.basic_get("work")[0].delivery_tag for _ in range(6)]
    consumer.basic_ack(tags[3], multiple=True)  # acks 0..3
    consumer.tx_commit()
    return connection


def drain_work(broker: BrokerProcess) -> list[tuple[bytes, bool]]:
    """``(body, redelivered)`` of every message left on ``work``."""
    with connect(broker) as connection:
        channel = connection.channel()
        got = []
        while (message := channel.basic_get("work", auto_ack=True))[0] is not None:
            got.append((message[2], message[0].redelivered))
    return got


def test_committed_acks_stay_acked_and_every_message_is_redelivered_after_kill_9(
    durable_broker: BrokerProcess,
) -> None:
    deliver_six_ack_four(durable_broker)
    durable_broker.kill()
    durable_broker.restart()
    got = drain_work(durable_broker)
    assert [body for body, _ in got] == [b"%d" % n for n in range(4, 10)]
    # Issue 17 item 12: after an unclean stop the broker cannot know which messages went out
    # (delivery marks are written lazily), so all of them are flagged, as RabbitMQ does.
    assert [redelivered for _, redelivered in got] == [True] * 6


def test_after_a_clean_stop_only_delivered_messages_are_redelivered(
    durable_broker: BrokerProcess,
) -> None:
    connection = deliver_six_ack_four(durable_broker)
    assert durable_broker.stop() == 0
    with contextlib.suppress(pika.exceptions.AMQPError):  # the broker closed it with 320
        connection.close()
    durable_broker.restart()
    got = drain_work(durable_broker)
    assert [body for body, _ in got] == [b"%d" % n for n in range(4, 10)]
    assert [redelivered for _, redelivered in got] == [True, True] + [False] * 4


def test_paged_out_messages_are_redelivered_after_kill_9(tmp_path) -> None:
    """The tail of a long queue stays in the store and is paged in later: flagged all the same."""
    broker = broker_process(tmp_path, "--queue-max-memory", "20000").start()
    try:
        with connect(broker) as connection:
            channel = connection.channel()
            channel.queue_declare("long", durable=True)
            channel.confirm_delivery()
            for number in range(300):
                channel.basic_publish("", "long", b"%04d" % number + b"x" * 500, PERSISTENT)
        broker.kill()
        broker.restart()
        with connect(broker) as connection:
            channel = connection.channel()
            got = []
            while (message := channel.basic_get("long", auto_ack=True))[0] is not None:
                got.append((message[2][:4], message[0].redelivered))
        assert [body for body, _ in got] == [b"%04d" % n for n in range(300)]
        assert all(redelivered for _, redelivered in got)
    finally:
        broker.stop()
