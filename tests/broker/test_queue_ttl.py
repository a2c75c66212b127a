"""Message TTL (``x-message-ttl``, ``expiration``) and queue TTL (``x-expires``).

RabbitMQ's rules (https://www.rabbitmq.com/ttl.html) checked here: expired messages are
dropped only at the head of the queue, yet are never delivered; the lower of the queue and
message TTL applies; a TTL of 0 still reaches a consumer that is ready at once; requeued
messages keep their original expiry; a queue with ``x-expires`` is deleted once it has had no
consumer, no basic.get and no redeclare for that long. TTLs are tens of milliseconds and every
wait is bounded polling.
"""

from __future__ import annotations

import time

import pika
import pytest
import trio
from support.broker_process import BrokerProcess
from support.polling import await_for, wait_for

from plugmq.client import connect as trio_connect

TIMEOUT = 10


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def count(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


async def test_queue_ttl_drops_messages_that_nobody_takes(shared_broker: BrokerProcess) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio_connect(shared_broker.url) as conn, conn.channel() as ch:
            arguments = {"x-message-ttl": 50}
            queue = (await ch.queue_declare("", exclusive=True, arguments=arguments)).name
            await ch.confirm_select()
            for number in range(3):
                await ch.publish("", queue, b"%d" % number)
            await ch.wait_for_confirms()

            async def empty() -> bool:
                return (await ch.queue_declare(queue, passive=True)).message_count == 0

            await await_for(empty)  # dropped by the queue's timer, without any client action
            await ch.queue_delete(queue)
            queue = await ch.queue_declare("", exclusive=True, arguments={"x-message-ttl": 5000})
            queue = queue.name
            await ch.publish_confirmed("", queue, b"fresh")
            got = await ch.get(queue, no_ack=True)
            assert got is not None and got.body == b"fresh"


def test_lower_of_queue_and_message_ttl_applies(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True, arguments={"x-message-ttl": 60_000})
        name = queue.method.queue
        channel.basic_publish("", name, b"short", pika.BasicProperties(expiration="30"))
        channel.basic_publish("", name, b"long", pika.BasicProperties(expiration="90000"))
        wait_for(lambda: count(channel, name) == 1)
        assert channel.basic_get(name, auto_ack=True)[2] == b"long"


def test_expired_message_behind_the_head_waits_but_is_never_delivered(
    shared_broker: BrokerProcess,
) -> None:
    """RabbitMQ expires only at the head: the short-lived message stays counted behind a
    long-lived one, and is dropped (not delivered) when it reaches the head."""
    with connect(shared_broker) as connection:
        channel = connection.channel()
        name = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", name, b"head", pika.BasicProperties(expiration="60000"))
        channel.basic_publish("", name, b"behind", pika.BasicProperties(expiration="1"))
        time.sleep(0.1)  # far beyond the 1 ms TTL
        assert count(channel, name) == 2
        assert channel.basic_get(name, auto_ack=True)[2] == b"head"
        assert channel.basic_get(name, auto_ack=True)[0] is None
        assert count(channel, name) == 0


async def test_ttl_zero_reaches_a_ready_consumer_only(shared_broker: BrokerProcess) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio_connect(shared_broker.url) as conn, conn.channel() as ch:
            arguments = {"x-message-ttl": 0}
            queue = (await ch.queue_declare("", exclusive=True, arguments=arguments)).name
            await ch.publish("", queue, b"nobody-waits")
            assert (await ch.queue_declare(queue, passive=True)).message_count == 0
            async with ch.consume(queue, no_ack=True) as consumer:
                await ch.publish("", queue, b"consumer-waits")
                message = await consumer.__anext__()
                assert message.body == b"consumer-waits"


def test_requeued_message_keeps_its_expiry(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        name = channel.queue_declare("", exclusive=True, arguments={"x-message-ttl": 100})
        name = name.method.queue
        channel.basic_publish("", name, b"held")
        method, _, _ = channel.basic_get(name)  # unacked messages do not expire ...
        time.sleep(0.2)
        channel.basic_nack(method.delivery_tag, requeue=True)  # ... but keep their deadline
        assert channel.basic_get(name, auto_ack=True)[0] is None
        assert count(channel, name) == 0


async def test_message_expiring_while_consumer_is_blocked_is_not_delivered(
    shared_broker: BrokerProcess,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio_connect(shared_broker.url) as conn, conn.channel() as ch:
            queue = (await ch.queue_declare("", exclusive=True)).name
            await ch.publish("", queue, b"first")
            await ch.publish("", queue, b"expires", {"expiration": "50"})
            await ch.publish("", queue, b"last")
            async with ch.consume(queue, prefetch=1) as consumer:
                first = await consumer.__anext__()
                await trio.sleep(0.15)  # "expires" reaches its deadline while prefetch is full
                await first.ack()
                second = await consumer.__anext__()
                await second.ack()
            assert [first.body, second.body] == [b"first", b"last"]


def test_invalid_expiration_closes_the_channel(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.basic_publish("", "nowhere", b"x", pika.BasicProperties(expiration="1.5"))
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.queue_declare("", exclusive=True)
        assert closed.value.reply_code == 406
        assert closed.value.reply_text == (
            "PRECONDITION_FAILED - invalid expiration '1.5': {leftover_string,\".5\"}"
        )


def queue_exists(channel, name: str) -> bool:
    """Probe with a mandatory publish, which (unlike a passive declare) is not a use."""
    try:
        channel.basic_publish("", name, b"probe", mandatory=True)
    except pika.exceptions.UnroutableError:
        return False
    return True


def test_unused_queue_expires(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("ttl-expires", arguments={"x-expires": 150})
        assert queue_exists(channel, "ttl-expires")
        wait_for(lambda: not queue_exists(channel, "ttl-expires"))


def test_consumer_and_basic_get_keep_a_queue_alive(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("ttl-alive", arguments={"x-expires": 150})
        tag = channel.basic_consume("ttl-alive", lambda *args: None)
        connection.sleep(0.3)
        channel.basic_cancel(tag)
        for _ in range(6):  # polled every 50 ms for 300 ms: twice the x-expires
            channel.basic_get("ttl-alive", auto_ack=True)
            connection.sleep(0.05)
        assert queue_exists(channel, "ttl-alive")
        wait_for(lambda: not queue_exists(channel, "ttl-alive"))
