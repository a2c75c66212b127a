"""Queue length limits: x-max-length, x-max-length-bytes and x-overflow.

RabbitMQ's rules (https://www.rabbitmq.com/maxlength.html): only ready messages count, not
unacknowledged ones; ``drop-head`` drops (or dead-letters, reason ``maxlen``) the oldest;
``reject-publish`` refuses the new message and nacks it in confirm mode — it was routed, so a
mandatory publish is not returned; ``reject-publish-dlx`` also dead-letters it.
"""

from __future__ import annotations

import pika
import pytest
import trio
from support.broker_process import BrokerProcess
from support.polling import wait_for

from plugmq.client import PublishNacked
from plugmq.client import connect as trio_connect


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def drain(channel, queue: str) -> list[bytes]:
    bodies = []
    while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
        bodies.append(got[2])
    return bodies


def declare(channel, arguments: dict) -> str:
    return channel.queue_declare("", exclusive=True, arguments=arguments).method.queue


def test_drop_head_keeps_the_newest(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = declare(channel, {"x-max-length": 2})
        for number in range(5):
            channel.basic_publish("", queue, b"%d" % number)
        assert drain(channel, queue) == [b"3", b"4"]


def test_max_length_bytes_counts_body_bytes(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = declare(channel, {"x-max-length-bytes": 10})
        for body in (b"aaaa", b"bbbb", b"cccc", b"dd"):
            channel.basic_publish("", queue, body)
        assert drain(channel, queue) == [b"bbbb", b"cccc", b"dd"]  # 10 bytes: at the limit


def test_unacknowledged_messages_do_not_count(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = declare(channel, {"x-max-length": 1, "x-overflow": "reject-publish"})
        channel.basic_publish("", queue, b"held")
        held = channel.basic_get(queue)[0]
        channel.basic_publish("", queue, b"ready")  # fits: "held" is unacked, not ready
        with pytest.raises(pika.exceptions.NackError):
            channel.basic_publish("", queue, b"over")
        channel.basic_ack(held.delivery_tag)
        assert drain(channel, queue) == [b"ready"]


def test_reject_publish_nacks_and_is_not_returned(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = declare(channel, {"x-max-length": 1, "x-overflow": "reject-publish"})
        channel.basic_publish("", queue, b"fits", mandatory=True)
        with pytest.raises(pika.exceptions.NackError):
            channel.basic_publish("", queue, b"refused", mandatory=True)
        assert drain(channel, queue) == [b"fits"]


async def test_reject_publish_dlx_dead_letters_the_refused_message(
    shared_broker: BrokerProcess,
) -> None:
    with trio.fail_after(10):
        async with trio_connect(shared_broker.url) as conn, conn.channel() as ch:
            dead = (await ch.queue_declare("", exclusive=True)).name
            arguments = {
                "x-max-length": 1,
                "x-overflow": "reject-publish-dlx",
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead,
            }
            queue = (await ch.queue_declare("", exclusive=True, arguments=arguments)).name
            await ch.confirm_select()
            await ch.publish_confirmed("", queue, b"fits")
            with pytest.raises(PublishNacked):
                await ch.publish_confirmed("", queue, b"refused")
            message = await ch.get(dead, no_ack=True)
            assert message is not None and message.body == b"refused"
            (death,) = message.properties.headers["x-death"]
            assert (death["reason"], death["queue"]) == ("maxlen", queue)
            kept = await ch.get(queue, no_ack=True)
            assert kept is not None and kept.body == b"fits"


def test_drop_head_dead_letters_with_reason_maxlen(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        dead = channel.queue_declare("", exclusive=True).method.queue
        queue = declare(
            channel,
            {"x-max-length": 1, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead},
        )
        channel.basic_publish("", queue, b"old")
        channel.basic_publish("", queue, b"new")
        _, props, body = wait_for(lambda: (got := channel.basic_get(dead))[0] and got)
        assert body == b"old" and props.headers["x-first-death-reason"] == "maxlen"
        assert drain(channel, queue) == [b"new"]
