"""Priority queues (x-max-priority) and consumer priorities (x-priority).

RabbitMQ's rules (https://www.rabbitmq.com/priority.html, /consumer-priority.html): higher
message priority first, FIFO within a priority, priorities above the maximum count as the
maximum, no priority counts as 0; a requeued message goes back to its place. Consumers of a
higher x-priority get messages while they can take them; lower ones only when they are blocked.
"""

from __future__ import annotations

import pika
import trio
from support.broker_process import BrokerProcess

from plugmq.client import connect as trio_connect

PRIORITIES = [1, 9, 0, 5, 3, None, 5]


async def test_higher_priority_first_fifo_within_capped_at_max(
    shared_broker: BrokerProcess,
) -> None:
    with trio.fail_after(10):
        async with trio_connect(shared_broker.url) as conn, conn.channel() as ch:
            arguments = {"x-max-priority": 5}
            queue = (await ch.queue_declare("", exclusive=True, arguments=arguments)).name
            await ch.confirm_select()
            for index, priority in enumerate(PRIORITIES):
                properties = {} if priority is None else {"priority": priority}
                await ch.publish("", queue, b"%d" % index, properties)
            await ch.wait_for_confirms()
            order = []
            while (message := await ch.get(queue, no_ack=True)) is not None:
                order.append(int(message.body))
            # 9 is capped to 5 and was published before the two 5s.
            assert order == [1, 3, 6, 4, 0, 2, 5]


def test_requeued_message_returns_to_its_place(shared_broker: BrokerProcess) -> None:
    with pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", shared_broker.port)
    ) as connection:
        channel = connection.channel()
        name = channel.queue_declare("", exclusive=True, arguments={"x-max-priority": 2})
        name = name.method.queue
        for body, priority in ((b"low", 0), (b"high-1", 2), (b"high-2", 2)):
            channel.basic_publish("", name, body, pika.BasicProperties(priority=priority))
        first = channel.basic_get(name)
        assert first[2] == b"high-1"
        channel.basic_nack(first[0].delivery_tag, requeue=True)
        bodies = []
        while (got := channel.basic_get(name, auto_ack=True))[0] is not None:
            bodies.append((got[2], got[0].redelivered))
        assert bodies == [(b"high-1", True), (b"high-2", False), (b"low", False)]


async def test_consumer_priority_serves_the_higher_consumer(shared_broker: BrokerProcess) -> None:
    with trio.fail_after(10):
        async with (
            trio_connect(shared_broker.url) as conn,
            conn.channel() as low_ch,
            conn.channel() as high_ch,
        ):
            queue = (await low_ch.queue_declare("", exclusive=True)).name
            await low_ch.basic_qos(prefetch_count=10)
            await high_ch.basic_qos(prefetch_count=2)
            low = await low_ch.start_consumer(queue, arguments={"x-priority": 1})
            high = await high_ch.start_consumer(queue, arguments={"x-priority": 10})
            await low_ch.confirm_select()
            for number in range(5):
                await low_ch.publish("", queue, b"%d" % number)
            await low_ch.wait_for_confirms()
            got_high = [await high.__anext__() for _ in range(2)]
            got_low = [await low.__anext__() for _ in range(3)]
            assert [m.body for m in got_high] == [b"0", b"1"]  # until its prefetch is full
            assert [m.body for m in got_low] == [b"2", b"3", b"4"]
