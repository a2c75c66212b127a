"""Publisher confirms against a real broker."""

from __future__ import annotations

import pytest
import trio

from plugmq.client import AMQPClientError, PublishNacked, connect

TIMEOUT = 30


async def test_thousand_publishes_with_confirms(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            queue = (await ch.queue_declare("", exclusive=True)).name
            await ch.confirm_select()
            sequence = [await ch.publish("", queue, b"m%d" % i) for i in range(1000)]
            assert sequence == list(range(1, 1001))
            await ch.wait_for_confirms()
            assert (await ch.queue_declare(queue, passive=True)).message_count == 1000
            await ch.wait_for_confirms()  # nothing outstanding: returns at once


async def test_publish_confirmed_waits_for_each_ack(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            queue = (await ch.queue_declare("", exclusive=True)).name
            await ch.confirm_select()
            for i in range(1, 11):
                assert await ch.publish_confirmed("", queue, b"x", {"delivery_mode": 2}) == i


async def test_concurrent_confirmed_publishers(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            queue = (await ch.queue_declare("", exclusive=True)).name
            await ch.confirm_select()

            async def publisher() -> None:
                for _ in range(50):
                    await ch.publish_confirmed("", queue, b"x")

            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(publisher)
            assert (await ch.queue_declare(queue, passive=True)).message_count == 500


async def test_nacks_raise_publish_nacked(amqp_url: str) -> None:
    arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            queue = (await ch.queue_declare("", exclusive=True, arguments=arguments)).name
            await ch.confirm_select()
            await ch.publish_confirmed("", queue, b"fits")
            with pytest.raises(PublishNacked) as raised:
                await ch.publish_confirmed("", queue, b"overflows")
            assert raised.value.sequence_numbers == [2]
            await ch.publish("", queue, b"3")
            await ch.publish("", queue, b"4")
            with pytest.raises(PublishNacked) as raised:
                await ch.wait_for_confirms()
            assert raised.value.sequence_numbers == [3, 4]
            await ch.wait_for_confirms()  # each nack is reported once


async def test_confirm_calls_need_confirm_mode(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            assert await ch.publish("", "nowhere", b"x") is None
            with pytest.raises(AMQPClientError, match="confirm_select"):
                await ch.publish_confirmed("", "nowhere", b"x")
            with pytest.raises(AMQPClientError, match="confirm_select"):
                await ch.wait_for_confirms()
