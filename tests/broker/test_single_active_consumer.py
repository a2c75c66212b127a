"""x-single-active-consumer: one consumer at a time receives, the next takes over.

RabbitMQ's rule (https://www.rabbitmq.com/consumers.html#single-active-consumer): every
consumer is registered, but only the first one receives messages; when it is cancelled (or its
channel closes) the next registered consumer becomes active and gets the rest, including the
messages the first left unacknowledged.
"""

from __future__ import annotations

import trio
from support.broker_process import BrokerProcess

from plugmq.client import connect as trio_connect


async def test_only_the_first_consumer_receives_until_it_goes(
    shared_broker: BrokerProcess,
) -> None:
    with trio.fail_after(10):
        async with (
            trio_connect(shared_broker.url) as conn,
            conn.channel() as ch1,
            conn.channel() as ch2,
        ):
            arguments = {"x-single-active-consumer": True}
            queue = (await ch1.queue_declare("", exclusive=True, arguments=arguments)).name
            await ch1.basic_qos(prefetch_count=2)
            first = await ch1.start_consumer(queue)
            second = await ch2.start_consumer(queue)
            await ch1.confirm_select()
            for number in range(4):
                await ch1.publish("", queue, b"%d" % number)
            await ch1.wait_for_confirms()
            taken = [await first.__anext__() for _ in range(2)]
            await taken[0].ack()
            got_first = [taken[0].body, (await first.__anext__()).body]
            # prefetch 2 on the active consumer: messages wait rather than go to "second".
            assert (await ch2.queue_declare(queue, passive=True)).message_count == 1
            await ch1.close()  # "1" and "2" were unacked: requeued to the next consumer
            got_second = []
            async for message in second:
                got_second.append(message.body)
                await message.ack()
                if len(got_second) == 3:
                    break
            assert got_first == [b"0", b"2"]
            assert sorted(got_second) == [b"1", b"2", b"3"]
