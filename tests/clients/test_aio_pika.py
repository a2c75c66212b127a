"""aio-pika (over aiormq) against a real broker process, unchanged.

pytest runs in trio mode, so each test is a plain function that runs its own asyncio loop with
``asyncio.run``; every await that waits for the broker is bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika import DeliveryMode, ExchangeType, Message
from aio_pika.abc import AbstractIncomingMessage
from support.broker_process import BrokerProcess

TIMEOUT = 10.0


def run(broker: BrokerProcess, body: Callable[[str], Awaitable[Any]]) -> Any:
    """Run ``body(url)`` on a fresh asyncio loop, bounded by ``TIMEOUT`` seconds."""

    async def bounded() -> Any:
        async with asyncio.timeout(TIMEOUT):
            return await body(broker.url)

    return asyncio.run(bounded())


def unique(prefix: str) -> str:
    """A name no other test on the shared broker uses."""
    return f"aiopika.{prefix}.{uuid.uuid4().hex[:8]}"


def collect_into(received: asyncio.Queue) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """A consumer callback that puts every delivered body on ``received``."""

    async def on_message(message: AbstractIncomingMessage) -> None:
        received.put_nowait(message.body)

    return on_message


async def drain(queue: aio_pika.abc.AbstractQueue) -> list[bytes]:
    """Every message ready in ``queue`` right now, fetched with basic.get and no-ack."""
    bodies = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        bodies.append(message.body)
    return bodies


def test_every_exchange_type_routes_with_confirms(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()  # publisher confirms are on by default
            queues = {}
            for kind in ExchangeType.DIRECT, ExchangeType.FANOUT, ExchangeType.TOPIC:
                exchange = await channel.declare_exchange(unique(kind.value), kind)
                queue = await channel.declare_queue(exclusive=True)
                await queue.bind(exchange, {"direct": "red", "fanout": "", "topic": "a.*"}[kind])
                queues[kind] = (exchange, queue)
            for kind, keys, routed in (
                (ExchangeType.DIRECT, ["red", "blue"], {"red"}),
                (ExchangeType.FANOUT, ["anything", "else"], {"anything", "else"}),
                (ExchangeType.TOPIC, ["a.b", "a.b.c", "b.a", "a.z"], {"a.b", "a.z"}),
            ):
                exchange, queue = queues[kind]
                for key in keys:
                    # aio-pika publishes mandatory by default: unroutable ones come back.
                    confirmation = await exchange.publish(Message(key.encode()), key)
                    if key in routed:
                        assert isinstance(confirmation, aiormq.spec.Basic.Ack)
                    else:
                        assert isinstance(confirmation.delivery, aiormq.spec.Basic.Return)
                        assert confirmation.body == key.encode()
            assert await drain(queues[ExchangeType.DIRECT][1]) == [b"red"]
            assert await drain(queues[ExchangeType.FANOUT][1]) == [b"anything", b"else"]
            assert await drain(queues[ExchangeType.TOPIC][1]) == [b"a.b", b"a.z"]

    run(shared_broker, body)


def test_headers_exchange_matches_all_or_any(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(unique("headers"), ExchangeType.HEADERS)
            all_queue = await channel.declare_queue(exclusive=True)
            any_queue = await channel.declare_queue(exclusive=True)
            await all_queue.bind(exchange, arguments={"x-match": "all", "format": "pdf", "n": 1})
            await any_queue.bind(exchange, arguments={"x-match": "any", "format": "pdf", "n": 1})
            for name, headers in (
                ("both", {"format": "pdf", "n": 1}),
                ("format", {"format": "pdf"}),
                ("n", {"n": 1, "other": "x"}),
                ("none", {"format": "zip"}),
            ):
                await exchange.publish(Message(name.encode(), headers=headers), "", mandatory=False)
            assert await drain(all_queue) == [b"both"]
            assert await drain(any_queue) == [b"both", b"format", b"n"]
            # The message's headers reach the consumer unchanged.
            await exchange.publish(Message(b"h", headers={"format": "pdf", "n": 1}), "")
            message = await all_queue.get(no_ack=True)
            assert message.headers == {"format": "pdf", "n": 1}

    run(shared_broker, body)


def test_exchange_to_exchange_binding(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            source = await channel.declare_exchange(unique("e2e-src"), ExchangeType.TOPIC)
            middle = await channel.declare_exchange(unique("e2e-mid"), ExchangeType.FANOUT)
            queue = await channel.declare_queue(exclusive=True)
            await middle.bind(source, "logs.#")
            await queue.bind(middle)
            for key in ("logs.error", "metrics.cpu", "logs.info.x"):
                await source.publish(Message(key.encode()), key, mandatory=False)
            assert await drain(queue) == [b"logs.error", b"logs.info.x"]
            await middle.unbind(source, "logs.#")
            returned = await source.publish(Message(b"after unbind"), "logs.error")
            assert isinstance(returned.delivery, aiormq.spec.Basic.Return)
            assert await drain(queue) == []

    run(shared_broker, body)


def test_consume_with_manual_ack_respects_prefetch(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=3)
            queue = await channel.declare_queue(exclusive=True)
            for number in range(10):
                await channel.default_exchange.publish(Message(b"%d" % number), queue.name)
            held: list[AbstractIncomingMessage] = []
            three = asyncio.Event()

            async def on_message(message: AbstractIncomingMessage) -> None:
                held.append(message)
                if len(held) == 3:
                    three.set()

            tag = await queue.consume(on_message)
            await three.wait()
            await asyncio.sleep(0.3)  # give the broker a chance to overrun the prefetch
            assert [m.body for m in held] == [b"0", b"1", b"2"]
            received = [m.body for m in held]
            # Acking one at a time lets exactly one more through each time.
            while len(received) < 10:
                before = len(held)
                await held[-3].ack()
                while len(held) == before:
                    await asyncio.sleep(0.01)
                received.append(held[-1].body)
            assert received == [b"%d" % n for n in range(10)]
            for message in held[-3:]:
                await message.ack()
            await queue.cancel(tag)
            # Passive: RabbitMQ refuses a non-passive redeclare of an amq.gen-* name (403).
            check = await channel.declare_queue(queue.name, passive=True)
            assert check.declaration_result.message_count == 0

    run(shared_broker, body)


def test_queue_iterator_and_nack_requeue(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=10)
            queue = await channel.declare_queue(exclusive=True)
            for number in range(3):
                await channel.default_exchange.publish(Message(b"%d" % number), queue.name)
            seen: list[tuple[bytes, bool]] = []
            async with queue.iterator() as messages:
                async for message in messages:
                    seen.append((message.body, message.redelivered))
                    if len(seen) == 1:
                        await message.nack(requeue=True)
                    else:
                        await message.ack()
                    if len(seen) == 4:
                        break
            assert seen == [(b"0", False), (b"1", False), (b"2", False), (b"0", True)]
            assert await drain(queue) == []

    run(shared_broker, body)


def test_basic_get_ack_reject(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            assert await queue.get(fail=False) is None
            with pytest.raises(aio_pika.exceptions.QueueEmpty):
                await queue.get()
            await channel.default_exchange.publish(
                Message(
                    b"payload",
                    content_type="text/plain",
                    correlation_id="c1",
                    delivery_mode=DeliveryMode.PERSISTENT,
                    priority=3,
                ),
                queue.name,
            )
            message = await queue.get()
            assert message.body == b"payload"
            assert message.content_type == "text/plain"
            assert message.correlation_id == "c1"
            assert message.delivery_mode == DeliveryMode.PERSISTENT
            assert message.priority == 3
            assert not message.redelivered
            await message.reject(requeue=True)
            again = await queue.get()
            assert again.body == b"payload" and again.redelivered
            await again.ack()
            assert await queue.get(fail=False) is None

    run(shared_broker, body)


def test_unroutable_mandatory_publish_is_returned(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(unique("mandatory"), ExchangeType.DIRECT)
            strict = await connection.channel(on_return_raises=True)
            strict_exchange = await strict.get_exchange(exchange.name)
            with pytest.raises(aio_pika.exceptions.DeliveryError) as raised:
                await strict_exchange.publish(Message(b"lost"), "nowhere", mandatory=True)
            assert raised.value.message.body == b"lost"
            # Without on_return_raises the returned message goes to the callbacks instead.
            quiet = await connection.channel(on_return_raises=False)
            returned: asyncio.Queue = asyncio.Queue()
            quiet.return_callbacks.add(lambda _channel, message: returned.put_nowait(message))
            quiet_exchange = await quiet.get_exchange(exchange.name)
            await quiet_exchange.publish(Message(b"back"), "nowhere", mandatory=True)
            message = await returned.get()
            assert message.body == b"back"
            assert message.routing_key == "nowhere"
            # A routable mandatory publish is simply confirmed.
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, "somewhere")
            await exchange.publish(Message(b"kept"), "somewhere", mandatory=True)
            assert await drain(queue) == [b"kept"]

    run(shared_broker, body)


def test_consumer_cancel_stops_deliveries(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            received: asyncio.Queue = asyncio.Queue()
            tag = await queue.consume(collect_into(received), no_ack=True)
            await channel.default_exchange.publish(Message(b"before"), queue.name)
            assert await received.get() == b"before"
            cancel_ok = await queue.cancel(tag)
            assert cancel_ok.consumer_tag == tag
            await channel.default_exchange.publish(Message(b"after"), queue.name)
            assert await drain(queue) == [b"after"]
            assert received.empty()

    run(shared_broker, body)


def test_queue_deleted_while_consuming_notifies_the_consumer(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(unique("deleted"), auto_delete=False)
            cancelled: asyncio.Queue = asyncio.Queue()
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(
                lambda frame: cancelled.put_nowait(frame.consumer_tag)
            )
            received: asyncio.Queue = asyncio.Queue()
            tag = await queue.consume(collect_into(received), no_ack=True)
            await channel.default_exchange.publish(Message(b"one"), queue.name)
            assert await received.get() == b"one"
            other = await connection.channel()
            assert await other.queue_delete(queue.name) is not None
            assert await cancelled.get() == tag
            assert tag not in underlay.consumers
            # The channel survives the server-sent cancel.
            fresh = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(Message(b"still works"), fresh.name)
            assert await drain(fresh) == [b"still works"]

    run(shared_broker, body)


def test_connection_close_and_reopen(shared_broker: BrokerProcess) -> None:
    name = unique("reopen")

    async def body(url: str) -> None:
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        queue = await channel.declare_queue(name, auto_delete=False)
        await channel.default_exchange.publish(Message(b"survives"), name)
        message = await queue.get()  # left unacknowledged: requeued when the connection closes
        assert message.body == b"survives"
        await connection.close()
        assert connection.is_closed
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            message = await queue.get()
            assert message.body == b"survives" and message.redelivered
            await message.ack()
            assert await queue.delete(if_unused=True, if_empty=True)

    run(shared_broker, body)


def test_robust_connection_round_trip(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        connection = await aio_pika.connect_robust(url)
        try:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(unique("robust"), ExchangeType.TOPIC)
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, "#")
            await exchange.publish(Message(b"robust"), "x.y")
            async with queue.iterator(timeout=TIMEOUT) as messages:
                async for message in messages:
                    async with message.process():
                        assert message.body == b"robust"
                        assert message.routing_key == "x.y"
                        assert message.exchange == exchange.name
                    break
        finally:
            await connection.close()

    run(shared_broker, body)


def test_large_message_and_many_channels(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        payload = bytes(range(256)) * 4096 * 3  # 3 MiB: many frames each way
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(Message(payload), queue.name)
            message = await queue.get(no_ack=True)
            assert message.body == payload
            # Channels opened and closed repeatedly: numbers are reused cleanly.
            for number in range(30):
                extra = await connection.channel()
                await extra.default_exchange.publish(Message(b"%d" % number), queue.name)
                await extra.close()
            assert await drain(queue) == [b"%d" % n for n in range(30)]

    run(shared_broker, body)


def test_transaction_commit_and_rollback(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel(publisher_confirms=False)
            queue = await channel.declare_queue(exclusive=True)
            transaction = channel.transaction()
            await transaction.select()
            await channel.default_exchange.publish(Message(b"rolled back"), queue.name)
            await transaction.rollback()
            await channel.default_exchange.publish(Message(b"committed"), queue.name)
            # Passive: RabbitMQ refuses a non-passive redeclare of an amq.gen-* name (403).
            check = await channel.declare_queue(queue.name, passive=True)
            assert check.declaration_result.message_count == 0
            await transaction.commit()
            assert await drain(queue) == [b"committed"]

    run(shared_broker, body)


def test_channel_errors_raise_and_channel_reopens(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity) as raised:
                await channel.declare_queue(unique("missing"), passive=True)
            assert "NOT_FOUND" in str(raised.value)
            await channel.reopen()
            missing = aio_pika.Exchange(channel, unique("missing-exchange"), ExchangeType.DIRECT)
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await missing.publish(Message(b"x"), "key")
            await channel.reopen()
            await channel.declare_exchange(unique("conflict"), ExchangeType.DIRECT)
            name = unique("conflict2")
            await channel.declare_exchange(name, ExchangeType.DIRECT)
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                await channel.declare_exchange(name, ExchangeType.FANOUT)
            await channel.reopen()
            queue = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(Message(b"after errors"), queue.name)
            assert await drain(queue) == [b"after errors"]
            await (await channel.get_exchange(name)).delete()

    run(shared_broker, body)


def test_two_consumers_share_a_queue_round_robin(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            first, second = await connection.channel(), await connection.channel()
            name = unique("shared")
            queue_a = await first.declare_queue(name, auto_delete=True)
            queue_b = await second.declare_queue(name, auto_delete=True)
            got_a: asyncio.Queue = asyncio.Queue()
            got_b: asyncio.Queue = asyncio.Queue()
            await queue_a.consume(collect_into(got_a), no_ack=True)
            await queue_b.consume(collect_into(got_b), no_ack=True)
            for number in range(10):
                await first.default_exchange.publish(Message(b"%d" % number), name)
            received_a = [await got_a.get() for _ in range(5)]
            received_b = [await got_b.get() for _ in range(5)]
            assert sorted(received_a + received_b) == sorted(b"%d" % n for n in range(10))
            assert received_a and received_b
            # An exclusive consumer is refused while others consume (403 ACCESS_REFUSED).
            third = await connection.channel()
            queue_c = await third.get_queue(name, ensure=False)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await queue_c.consume(collect_into(got_a), exclusive=True)

    run(shared_broker, body)


def test_purge_unbind_and_delete(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(unique("purge"), ExchangeType.FANOUT)
            queue = await channel.declare_queue(unique("purge-q"))
            await queue.bind(exchange)
            for number in range(4):
                await exchange.publish(Message(b"%d" % number), "")
            purge_ok = await queue.purge()
            assert purge_ok.message_count == 4
            await queue.unbind(exchange)
            returned = await exchange.publish(Message(b"unrouted"), "")
            assert isinstance(returned.delivery, aiormq.spec.Basic.Return)
            await exchange.publish(Message(b"direct"), "", mandatory=False)
            await channel.default_exchange.publish(Message(b"kept"), queue.name)
            delete_ok = await queue.delete(if_unused=False, if_empty=False)
            assert delete_ok.message_count == 1
            await exchange.delete()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await channel.declare_queue(queue.name, passive=True)

    run(shared_broker, body)


def test_auto_delete_exchange_goes_with_its_last_binding(shared_broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            source = await channel.declare_exchange(
                unique("auto-src"), ExchangeType.FANOUT, auto_delete=True
            )
            middle = await channel.declare_exchange(
                unique("auto-mid"), ExchangeType.FANOUT, auto_delete=True
            )
            lonely = await channel.declare_exchange(
                unique("auto-unbound"), ExchangeType.TOPIC, auto_delete=True
            )
            await middle.bind(source)
            queue = await channel.declare_queue(unique("auto-q"))
            await queue.bind(middle)
            await source.publish(Message(b"through both"), "")
            assert await drain(queue) == [b"through both"]
            # Deleting the only queue empties `middle`, whose removal empties `source`.
            await queue.delete()
            for gone in (middle, source):
                checker = await connection.channel()
                with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                    await checker.declare_exchange(gone.name, passive=True)
            # An auto-delete exchange that never had a binding stays (as in RabbitMQ).
            assert await channel.declare_exchange(lonely.name, passive=True)
            other = await channel.declare_queue(exclusive=True)
            await other.bind(lonely, "a.#")
            await other.unbind(lonely, "a.#")
            checker = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await checker.declare_exchange(lonely.name, passive=True)

    run(shared_broker, body)


def test_consumer_priorities(shared_broker: BrokerProcess) -> None:
    """The broker announces ``consumer_priorities``: ``x-priority`` consumers go first."""

    async def body(url: str) -> None:
        async with await aio_pika.connect(url) as connection:
            assert connection.transport.connection.server_capabilities["consumer_priorities"]
            low_channel, high_channel = await connection.channel(), await connection.channel()
            await high_channel.set_qos(prefetch_count=2)
            name = unique("priorities")
            low_queue = await low_channel.declare_queue(name, auto_delete=True)
            high_queue = await high_channel.declare_queue(name, auto_delete=True)
            got_low: asyncio.Queue = asyncio.Queue()
            got_high: asyncio.Queue = asyncio.Queue()
            held: list[AbstractIncomingMessage] = []

            async def on_high(message: AbstractIncomingMessage) -> None:
                held.append(message)
                got_high.put_nowait(message.body)

            # The low-priority consumer subscribes first, so plain round-robin would favour it.
            await low_queue.consume(collect_into(got_low), no_ack=True)
            await high_queue.consume(on_high, arguments={"x-priority": 10})
            for number in range(6):
                await low_channel.default_exchange.publish(Message(b"%d" % number), name)
            assert [await got_high.get() for _ in range(2)] == [b"0", b"1"]
            assert [await got_low.get() for _ in range(4)] == [b"2", b"3", b"4", b"5"]
            # Room again at the high-priority consumer: it takes the next message.
            await held[0].ack()
            await low_channel.default_exchange.publish(Message(b"6"), name)
            assert await got_high.get() == b"6"
            assert got_low.empty()
            # A priority that is not an integer is refused (406), as RabbitMQ does.
            bad_channel = await connection.channel()
            bad_queue = await bad_channel.get_queue(name, ensure=False)
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                await bad_queue.consume(collect_into(got_low), arguments={"x-priority": "high"})

    run(shared_broker, body)


def test_broker_shutdown_closes_the_connection(broker: BrokerProcess) -> None:
    async def body(url: str) -> None:
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        await channel.declare_queue(exclusive=True)
        closed: asyncio.Future = asyncio.get_running_loop().create_future()
        connection.close_callbacks.add(lambda _sender, exc: closed.done() or closed.set_result(exc))
        stopping = asyncio.get_running_loop().run_in_executor(None, broker.stop)
        reason = await closed
        assert await stopping == 0
        assert isinstance(reason, aiormq.exceptions.ConnectionClosed)
        assert reason.args[0] == 320 and "CONNECTION_FORCED" in reason.args[1]

    run(broker, body)
