"""Channel operations against a real broker: declares, publish/consume, get, errors, tx.

Each test bounds its own time with ``trio.fail_after`` and uses server-named or unique names,
because the broker is shared by the whole session.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

from plugmq.client import ChannelClosed, ClientChannel, Message, ReturnedMessage, connect

TIMEOUT = 20


async def _take(consumer: object, count: int) -> list[Message]:
    messages = []
    async for message in consumer:  # type: ignore[attr-defined]
        messages.append(message)
        if len(messages) == count:
            break
    return messages


async def _private_queue(ch: ClientChannel) -> str:
    return (await ch.queue_declare("", exclusive=True)).name


async def test_declare_bind_publish_consume_ack(amqp_url: str, name: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            await ch.exchange_declare(name, "topic", auto_delete=True)
            queue = await _private_queue(ch)
            await ch.queue_bind(queue, name, "a.#")
            for key in ("a.b", "a.c.d", "b.a"):
                await ch.publish(name, key, key.encode(), {"content_type": "text/plain"})
            async with ch.consume(queue, prefetch=10) as consumer:
                messages = await _take(consumer, 2)
                for message in messages:
                    await message.ack()
            assert [m.routing_key for m in messages] == ["a.b", "a.c.d"]
            assert [m.body for m in messages] == [b"a.b", b"a.c.d"]
            assert all(m.exchange == name and not m.redelivered for m in messages)
            assert messages[0].properties.content_type == "text/plain"
            assert (await ch.queue_declare(queue, passive=True)).message_count == 0
            await ch.queue_unbind(queue, name, "a.#")
            await ch.exchange_delete(name)


async def test_queue_declare_result_purge_and_delete(amqp_url: str, name: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            declared = await ch.queue_declare(name, auto_delete=False)
            assert declared == (name, 0, 0)
            for _ in range(3):
                await ch.publish("", name, b"x")
            await ch.confirm_select()  # a round trip: the publishes above are routed
            assert await ch.queue_purge(name) == 3
            await ch.publish("", name, b"y")
            await ch.wait_for_confirms()
            assert await ch.queue_delete(name) == 1


async def test_basic_get(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            queue = await _private_queue(ch)
            assert await ch.get(queue) is None
            await ch.publish("", queue, b"one", {"headers": {"n": 1}})
            await ch.publish("", queue, b"two")
            first = await ch.get(queue)
            while first is None:  # the publish is asynchronous: wait until it is queued
                await trio.sleep(0.01)
                first = await ch.get(queue)
            assert (first.body, first.properties.headers) == (b"one", {"n": 1})
            await first.ack()
            second = await ch.get(queue, no_ack=True)
            assert second is not None and second.body == b"two"
            assert second.message_count == 0
            assert await ch.get(queue) is None


async def test_one_mebibyte_body_is_split_across_frames(amqp_url: str) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, far above frame_max
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            assert conn.frame_max < len(body)
            queue = await _private_queue(ch)
            await ch.confirm_select()
            await ch.publish_confirmed("", queue, body)
            message = await ch.get(queue, no_ack=True)
            assert message is not None and message.body == body
            await ch.publish("", queue, body)
            async with ch.consume(queue, no_ack=True) as consumer:
                [delivered] = await _take(consumer, 1)
            assert delivered.body == body


async def test_nack_requeue_redelivers_and_reject_drops(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            queue = await _private_queue(ch)
            await ch.publish("", queue, b"m")
            async with ch.consume(queue, prefetch=1) as consumer:
                [first] = await _take(consumer, 1)
                assert not first.redelivered
                await first.nack(requeue=True)
                [again] = await _take(consumer, 1)
                assert again.redelivered and again.body == b"m"
                await again.reject(requeue=False)
            assert (await ch.queue_declare(queue, passive=True)).message_count == 0


async def test_leaving_consume_requeues_unconsumed_messages(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            queue = await _private_queue(ch)
            for i in range(5):
                await ch.publish("", queue, b"%d" % i)
            async with ch.consume(queue, prefetch=5) as consumer:
                [first] = await _take(consumer, 1)
                await first.ack()
            left = []
            while (message := await ch.get(queue, no_ack=True)) is not None:
                left.append(message.body)
            assert sorted(left) == [b"1", b"2", b"3", b"4"]


async def test_mandatory_publish_is_returned(amqp_url: str, name: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            await ch.exchange_declare(name, "direct", auto_delete=True)
            queue = await _private_queue(ch)
            await ch.queue_bind(queue, name, "routed")
            await ch.publish(name, "nowhere", b"lost", {"message_id": "m1"}, mandatory=True)
            await ch.publish(name, "routed", b"kept", mandatory=True)
            returned = await ch.returns.receive()
            assert isinstance(returned, ReturnedMessage)
            assert (returned.reply_code, returned.routing_key) == (312, "nowhere")
            assert returned.body == b"lost" and returned.properties.message_id == "m1"
            with pytest.raises(trio.WouldBlock):
                ch.returns.receive_nowait()
            await ch.exchange_delete(name)


async def test_on_return_callback(amqp_url: str) -> None:
    returned: list[ReturnedMessage] = []
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel(on_return=returned.append) as ch:
            await ch.confirm_select()
            await ch.publish_confirmed("", "no-such-queue-anywhere", b"x", mandatory=True)
            # RabbitMQ sends basic.return before the confirm of the same message
            assert [r.reply_text for r in returned] == ["NO_ROUTE"]


async def test_channel_error_closes_only_the_channel(amqp_url: str, name: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn:
            async with conn.channel() as ch:
                with pytest.raises(ChannelClosed) as raised:
                    await ch.queue_declare(name, passive=True)
                assert raised.value.reply_code == 404
                assert name in raised.value.reply_text
                assert not ch.is_open
                with pytest.raises(ChannelClosed) as again:
                    await ch.queue_declare("", exclusive=True)
                assert again.value.reply_code == 404
            async with conn.channel() as fresh:
                assert (await fresh.queue_declare("", exclusive=True)).name


async def test_broker_cancel_ends_consumer_iteration(amqp_url: str, name: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            await ch.queue_declare(name)
            await ch.publish("", name, b"before delete")
            async with ch.consume(name, no_ack=True) as consumer:
                [message] = await _take(consumer, 1)
                async with conn.channel() as other:
                    await other.queue_delete(name)
                rest = [m async for m in consumer]
            assert message.body == b"before delete" and rest == []
            assert consumer.cancelled_by_broker


async def test_tx_commit_and_rollback(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            queue = await _private_queue(ch)
            await ch.tx_select()
            await ch.publish("", queue, b"rolled back")
            await ch.tx_rollback()
            assert (await ch.queue_declare(queue, passive=True)).message_count == 0
            await ch.publish("", queue, b"committed")
            await ch.tx_commit()
            assert (await ch.queue_declare(queue, passive=True)).message_count == 1


async def test_exchange_to_exchange_binding(amqp_url: str, name: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            source, destination = f"{name}.src", f"{name}.dst"
            await ch.exchange_declare(source, "fanout", auto_delete=True)
            await ch.exchange_declare(destination, "direct", auto_delete=True)
            await ch.exchange_bind(destination, source)
            queue = await _private_queue(ch)
            await ch.queue_bind(queue, destination, "k")
            await ch.confirm_select()
            await ch.publish_confirmed(source, "k", b"via e2e")
            message = await ch.get(queue, no_ack=True)
            assert message is not None and message.body == b"via e2e"
            await ch.exchange_unbind(destination, source)
            await ch.exchange_delete(source)
            await ch.exchange_delete(destination)


async def test_concurrent_calls_on_one_channel(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            names: list[str] = []

            async def declare() -> None:
                names.append((await ch.queue_declare("", exclusive=True)).name)

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(declare)
            assert len(set(names)) == 20


async def test_cancelled_call_does_not_confuse_the_next(amqp_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(amqp_url) as conn, conn.channel() as ch:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(ch.queue_declare, "", exclusive=True))
                await trio.testing.wait_all_tasks_blocked()  # sent, waiting for declare-ok
                nursery.cancel_scope.cancel()
            queue = (await ch.queue_declare("", exclusive=True)).name
            assert (await ch.queue_declare(queue, passive=True)).name == queue
