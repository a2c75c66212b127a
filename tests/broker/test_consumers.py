"""Consumers: exclusive consumers, per-consumer vs per-channel prefetch, basic.recover.

RabbitMQ's prefetch rule (https://www.rabbitmq.com/consumer-prefetch.html): basic.qos with
global=false limits each consumer started afterwards on the channel; global=true limits all
of the channel's consumers together; both apply at once when both are set.
"""

from __future__ import annotations

import pika
import pytest
from support.broker_process import BrokerProcess
from support.polling import wait_for


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def ready(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def test_exclusive_consumer_locks_out_others(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_consume(queue, lambda *args: None, exclusive=True)
        other = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            other.basic_consume(queue, lambda *args: None)
        assert (closed.value.reply_code, closed.value.reply_text) == (
            403, f"ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use",
        )  # fmt: skip


def test_per_consumer_and_per_channel_prefetch(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queues = [channel.queue_declare("", exclusive=True).method.queue for _ in range(2)]
        for queue in queues:
            for _ in range(10):
                channel.basic_publish("", queue, b"x")
        channel.basic_qos(prefetch_count=2, global_qos=False)
        channel.basic_qos(prefetch_count=3, global_qos=True)
        received: list[str] = []
        channel.basic_consume(queues[0], lambda ch, method, props, body: received.append("a"))
        wait_for(lambda: connection.process_data_events(0.02) or len(received) == 2)
        channel.basic_consume(queues[1], lambda ch, method, props, body: received.append("b"))
        wait_for(lambda: connection.process_data_events(0.02) or len(received) == 3)
        connection.process_data_events(time_limit=0.2)  # nothing more may arrive
        assert sorted(received) == ["a", "a", "b"]
        assert [ready(channel, queue) for queue in queues] == [8, 9]


def test_basic_recover_redelivers_unacked(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"again")
        first = wait_for(lambda: channel.basic_get(queue)[0])
        assert not first.redelivered
        channel.basic_recover(requeue=True)
        method, _, body = wait_for(lambda: (got := channel.basic_get(queue))[0] and got)
        assert body == b"again" and method.redelivered
