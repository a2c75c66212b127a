"""exchange.declare / delete and queue.delete / purge as RabbitMQ 3.10 answers them.

Auto-delete (https://www.rabbitmq.com/exchanges.html): an auto-delete exchange goes when the
last binding *from* it is removed — by unbind or by its queue being deleted — and an
auto-delete exchange that never had a binding stays. The reply texts are RabbitMQ's.
"""

from __future__ import annotations

import pika
import pytest
import trio
from support.broker_process import BrokerProcess

from plugmq.client import ChannelClosed
from plugmq.client import connect as trio_connect


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def closed_with(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        call(*args, **kwargs)
    return closed.value.reply_code, closed.value.reply_text


def exchange_exists(connection, name: str) -> bool:
    try:
        connection.channel().exchange_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    return True


def test_passive_durable_and_internal(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        assert closed_with(channel.exchange_declare, "ex-missing", passive=True) == (
            404, "NOT_FOUND - no exchange 'ex-missing' in vhost '/'",
        )  # fmt: skip
        channel = connection.channel()
        channel.exchange_declare("ex-transient", "direct")
        assert closed_with(channel.exchange_declare, "ex-transient", "direct", durable=True) == (
            406, "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'ex-transient' "
            "in vhost '/': received 'true' but current is 'false'",
        )  # fmt: skip
        channel = connection.channel()
        channel.exchange_declare("ex-internal", "fanout", internal=True)
        channel.basic_publish("ex-internal", "", b"x")
        assert closed_with(channel.queue_declare, "", exclusive=True) == (
            403, "ACCESS_REFUSED - cannot publish to internal exchange 'ex-internal' in vhost '/'",
        )  # fmt: skip
        channel = connection.channel()
        channel.exchange_delete("ex-transient")
        channel.exchange_delete("ex-internal")


def test_auto_delete_exchange_goes_with_its_last_binding(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("ex-auto-unbind", "direct", auto_delete=True)
        channel.exchange_declare("ex-auto-qdelete", "fanout", auto_delete=True)
        channel.exchange_declare("ex-auto-never", "fanout", auto_delete=True)
        queue = channel.queue_declare("ex-auto-q").method.queue
        channel.queue_bind(queue, "ex-auto-unbind", "a")
        channel.queue_bind(queue, "ex-auto-unbind", "b")
        channel.queue_bind(queue, "ex-auto-qdelete")
        channel.queue_unbind(queue, "ex-auto-unbind", "a")
        assert exchange_exists(connection, "ex-auto-unbind")  # one binding left
        channel.queue_unbind(queue, "ex-auto-unbind", "b")
        assert not exchange_exists(connection, "ex-auto-unbind")
        channel.queue_delete(queue)
        assert not exchange_exists(connection, "ex-auto-qdelete")
        assert exchange_exists(connection, "ex-auto-never")
        channel.exchange_delete("ex-auto-never")


def test_exchange_delete_if_unused(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("ex-used", "direct")
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "ex-used", "k")
        assert closed_with(channel.exchange_delete, "ex-used", if_unused=True) == (
            406, "PRECONDITION_FAILED - exchange 'ex-used' in vhost '/' in use",
        )  # fmt: skip
        channel = connection.channel()
        channel.queue_unbind(queue, "ex-used", "k")
        channel.exchange_delete("ex-used", if_unused=True)
        assert not exchange_exists(connection, "ex-used")


def test_queue_delete_if_empty_if_unused_and_purge(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("ex-dq")
        for _ in range(3):
            channel.basic_publish("", "ex-dq", b"x")
        assert closed_with(channel.queue_delete, "ex-dq", if_empty=True) == (
            406, "PRECONDITION_FAILED - queue 'ex-dq' in vhost '/' not empty",
        )  # fmt: skip
        channel = connection.channel()
        assert channel.queue_purge("ex-dq").method.message_count == 3
        channel.basic_consume("ex-dq", lambda *args: None)
        other = connection.channel()
        assert closed_with(other.queue_delete, "ex-dq", if_unused=True) == (
            406, "PRECONDITION_FAILED - queue 'ex-dq' in vhost '/' in use",
        )  # fmt: skip
        assert channel.queue_delete("ex-dq").method.message_count == 0


async def test_deleting_a_queue_cancels_its_consumers(shared_broker: BrokerProcess) -> None:
    """Server-initiated basic.cancel (consumer_cancel_notify), for every deletion path."""
    with trio.fail_after(10):
        async with trio_connect(shared_broker.url) as conn, conn.channel() as ch:
            queue = (await ch.queue_declare("")).name
            consumer = await ch.start_consumer(queue)
            async with trio_connect(shared_broker.url) as other, other.channel() as och:
                await och.queue_delete(queue)
            assert [m async for m in consumer] == []
            assert consumer.cancelled_by_broker

            auto = (await ch.queue_declare("", auto_delete=True)).name
            first = await ch.start_consumer(auto)
            await ch.cancel_consumer(first)  # the last consumer goes: so does the queue
            with pytest.raises(ChannelClosed, match="NOT_FOUND"):
                await ch.queue_declare(auto, passive=True)
