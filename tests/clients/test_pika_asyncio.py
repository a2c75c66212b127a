"""pika's AsyncioConnection (callback style, on an asyncio loop) against a real broker process.

pika's asynchronous adapters report every reply through a callback. The helpers below turn one
callback into one awaited future, so each test reads top to bottom; pika itself is used
unchanged. Every wait is bounded by ``asyncio.timeout`` around the whole test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.spec import Basic, BasicProperties
from support.broker_process import BrokerProcess

TIMEOUT = 10.0


def run(broker: BrokerProcess, body: Callable[[BrokerProcess], Awaitable[Any]]) -> Any:
    """Run ``body(broker)`` on a fresh asyncio loop, bounded by ``TIMEOUT`` seconds."""

    async def bounded() -> Any:
        async with asyncio.timeout(TIMEOUT):
            return await body(broker)

    return asyncio.run(bounded())


def unique(prefix: str) -> str:
    """A name no other test on the shared broker uses."""
    return f"pika-asyncio.{prefix}.{uuid.uuid4().hex[:8]}"


async def open_connection(broker: BrokerProcess) -> AsyncioConnection:
    """Open an :class:`AsyncioConnection` on the running loop and wait until it is open."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future = loop.create_future()
    AsyncioConnection(
        pika.ConnectionParameters("127.0.0.1", broker.port, connection_attempts=1),
        on_open_callback=opened.set_result,
        on_open_error_callback=lambda _conn, error: opened.set_exception(error),
        custom_ioloop=loop,
    )
    return await opened


async def close_connection(connection: AsyncioConnection) -> None:
    """Close ``connection`` and wait for the close callback."""
    closed: asyncio.Future = asyncio.get_running_loop().create_future()
    connection.add_on_close_callback(lambda _conn, reason: closed.set_result(reason))
    if connection.is_closed:
        return
    connection.close()
    reason = await closed
    assert isinstance(reason, pika.exceptions.ConnectionClosedByClient)


class Channel:
    """A pika channel whose RPCs are awaitable; everything else is pika's own channel."""

    def __init__(self, channel: pika.channel.Channel) -> None:
        self.pika = channel
        self.returns: asyncio.Queue = asyncio.Queue()
        self.cancels: asyncio.Queue = asyncio.Queue()
        self.confirms: asyncio.Queue = asyncio.Queue()
        channel.add_on_return_callback(
            lambda _ch, method, properties, body: self.returns.put_nowait((method, body))
        )
        channel.add_on_cancel_callback(lambda frame: self.cancels.put_nowait(frame.method))
        self._get: asyncio.Future | None = None
        channel.add_callback(self._on_get_empty, [Basic.GetEmpty], one_shot=False)

    def _on_get_empty(self, _frame: Any) -> None:
        """basic.get-empty answers the pending :meth:`get`."""
        assert self._get is not None
        self._get.set_result(None)

    def _on_get_ok(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        """basic.get-ok answers the pending :meth:`get`."""
        assert self._get is not None
        self._get.set_result((method, properties, body))

    @classmethod
    async def open(cls, connection: AsyncioConnection) -> Channel:
        """Open a new channel on ``connection``."""
        opened: asyncio.Future = asyncio.get_running_loop().create_future()
        connection.channel(on_open_callback=opened.set_result)
        return cls(await opened)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``pika_channel.method(..., callback=...)`` and await the reply method."""
        reply: asyncio.Future = asyncio.get_running_loop().create_future()
        getattr(self.pika, method)(*args, callback=reply.set_result, **kwargs)
        frame = await reply
        return frame.method

    async def confirm_delivery(self) -> None:
        """confirm.select; acks and nacks go to :attr:`confirms`."""
        await self.call("confirm_delivery", lambda frame: self.confirms.put_nowait(frame.method))

    async def get(self, queue: str, auto_ack: bool = False) -> tuple[Any, Any, bytes] | None:
        """basic.get: ``(method, properties, body)`` or None on basic.get-empty."""
        self._get = asyncio.get_running_loop().create_future()
        self.pika.basic_get(queue, self._on_get_ok, auto_ack=auto_ack)
        try:
            return await self._get
        finally:
            self._get = None

    async def drain(self, queue: str) -> list[bytes]:
        """Every message ready in ``queue`` now (basic.get with auto-ack)."""
        bodies = []
        while (got := await self.get(queue, auto_ack=True)) is not None:
            bodies.append(got[2])
        return bodies

    async def temporary_queue(self) -> str:
        """Declare a server-named exclusive queue and return its name."""
        return (await self.call("queue_declare", "", exclusive=True)).queue


def test_all_exchange_types_and_exchange_bindings(shared_broker: BrokerProcess) -> None:
    async def body(broker: BrokerProcess) -> None:
        connection = await open_connection(broker)
        channel = await Channel.open(connection)
        names = {kind: unique(kind) for kind in ("direct", "fanout", "topic", "headers")}
        for kind, name in names.items():
            ok = await channel.call("exchange_declare", name, kind)
            assert isinstance(ok, pika.spec.Exchange.DeclareOk)
        queues = {kind: await channel.temporary_queue() for kind in names}
        await channel.call("queue_bind", queues["direct"], names["direct"], "k1")
        await channel.call("queue_bind", queues["fanout"], names["fanout"])
        await channel.call("queue_bind", queues["topic"], names["topic"], "*.orange.*")
        await channel.call(
            "queue_bind",
            queues["headers"],
            names["headers"],
            arguments={"x-match": "any", "colour": "blue", "size": 5},
        )
        # direct -> fanout: everything routed with key k2 on the direct exchange fans out too.
        await channel.call("exchange_bind", names["fanout"], names["direct"], "k2")
        publish = channel.pika.basic_publish
        publish(names["direct"], "k1", b"direct k1")
        publish(names["direct"], "k2", b"direct k2 via fanout")
        publish(names["fanout"], "ignored", b"fanout")
        publish(names["topic"], "quick.orange.rabbit", b"topic match")
        publish(names["topic"], "lazy.brown.fox", b"topic miss")
        for text, headers in (
            ("blue", {"colour": "blue"}),
            ("five", {"size": 5}),
            ("red", {"colour": "red"}),
            ("no headers", None),
        ):
            publish(names["headers"], "", text.encode(), BasicProperties(headers=headers))
        await channel.call("basic_qos", prefetch_count=0)  # a round trip: publishes are in
        assert await channel.drain(queues["direct"]) == [b"direct k1"]
        assert await channel.drain(queues["fanout"]) == [b"direct k2 via fanout", b"fanout"]
        assert await channel.drain(queues["topic"]) == [b"topic match"]
        assert await channel.drain(queues["headers"]) == [b"blue", b"five"]
        unbound = await channel.call("exchange_unbind", names["fanout"], names["direct"], "k2")
        assert isinstance(unbound, pika.spec.Exchange.UnbindOk)
        for name in names.values():
            await channel.call("exchange_delete", name)
        await close_connection(connection)

    run(shared_broker, body)


def test_confirms_manual_ack_and_prefetch(shared_broker: BrokerProcess) -> None:
    async def body(broker: BrokerProcess) -> None:
        connection = await open_connection(broker)
        channel = await Channel.open(connection)
        queue = await channel.temporary_queue()
        await channel.confirm_delivery()
        for number in range(20):
            channel.pika.basic_publish("", queue, b"%d" % number)
        confirmed = 0
        while confirmed < 20:
            ack = await channel.confirms.get()
            assert isinstance(ack, Basic.Ack)
            confirmed = ack.delivery_tag if ack.multiple else confirmed + 1
        await channel.call("basic_qos", prefetch_count=5)
        deliveries: asyncio.Queue = asyncio.Queue()
        channel.pika.basic_consume(
            queue, lambda _ch, method, _props, body: deliveries.put_nowait((method, body))
        )
        received = []
        while len(received) < 20:
            batch = [await deliveries.get() for _ in range(5)]
            await asyncio.sleep(0.1)
            assert deliveries.empty(), "the broker exceeded prefetch_count=5"
            received.extend(body for _method, body in batch)
            channel.pika.basic_ack(batch[-1][0].delivery_tag, multiple=True)
        assert received == [b"%d" % n for n in range(20)]
        ok = await channel.call("queue_declare", queue, passive=True)
        assert ok.message_count == 0
        await close_connection(connection)

    run(shared_broker, body)


def test_nack_requeue_and_basic_get(shared_broker: BrokerProcess) -> None:
    async def body(broker: BrokerProcess) -> None:
        connection = await open_connection(broker)
        channel = await Channel.open(connection)
        queue = await channel.temporary_queue()
        assert await channel.get(queue) is None
        properties = BasicProperties(
            content_type="application/json", headers={"n": 1}, message_id="m-1", delivery_mode=2
        )
        channel.pika.basic_publish("", queue, b'{"a": 1}', properties)
        method, props, payload = await channel.get(queue)
        assert payload == b'{"a": 1}' and not method.redelivered
        assert (props.content_type, props.headers, props.message_id, props.delivery_mode) == (
            "application/json",
            {"n": 1},
            "m-1",
            2,
        )
        assert method.message_count == 0
        channel.pika.basic_nack(method.delivery_tag, requeue=True)
        method, _, payload = await channel.get(queue)
        assert payload == b'{"a": 1}' and method.redelivered
        channel.pika.basic_reject(method.delivery_tag, requeue=False)
        assert await channel.get(queue) is None
        await close_connection(connection)

    run(shared_broker, body)


def test_mandatory_publish_is_returned(shared_broker: BrokerProcess) -> None:
    async def body(broker: BrokerProcess) -> None:
        connection = await open_connection(broker)
        channel = await Channel.open(connection)
        await channel.confirm_delivery()
        channel.pika.basic_publish("amq.direct", unique("nobody"), b"bounce", mandatory=True)
        method, returned = await channel.returns.get()
        assert (method.reply_code, method.reply_text, returned) == (312, "NO_ROUTE", b"bounce")
        assert method.exchange == "amq.direct"
        # RabbitMQ acks a returned message after the return.
        assert isinstance(await channel.confirms.get(), Basic.Ack)
        await close_connection(connection)

    run(shared_broker, body)


def test_consumer_cancel_and_queue_deleted_under_consumer(shared_broker: BrokerProcess) -> None:
    async def body(broker: BrokerProcess) -> None:
        connection = await open_connection(broker)
        channel = await Channel.open(connection)
        queue = await channel.temporary_queue()
        deliveries: asyncio.Queue = asyncio.Queue()
        tag = await channel.call(
            "basic_consume",
            queue,
            lambda _ch, _method, _props, body: deliveries.put_nowait(body),
            auto_ack=True,
        )
        channel.pika.basic_publish("", queue, b"first")
        assert await deliveries.get() == b"first"
        cancel_ok = await channel.call("basic_cancel", tag.consumer_tag)
        assert cancel_ok.consumer_tag == tag.consumer_tag
        channel.pika.basic_publish("", queue, b"not delivered")
        assert await channel.drain(queue) == [b"not delivered"]
        assert deliveries.empty()

        # Now a consumer whose queue another channel deletes: the broker cancels it.
        shared = unique("deleted")
        await channel.call("queue_declare", shared)
        consume_ok = await channel.call(
            "basic_consume",
            shared,
            lambda _ch, _method, _props, body: deliveries.put_nowait(body),
            auto_ack=True,
        )
        other = await Channel.open(connection)
        channel.pika.basic_publish("", shared, b"before delete")
        assert await deliveries.get() == b"before delete"
        await other.call("queue_delete", shared)
        cancel = await channel.cancels.get()
        assert cancel.consumer_tag == consume_ok.consumer_tag
        assert consume_ok.consumer_tag not in channel.pika.consumer_tags
        assert channel.pika.is_open
        await close_connection(connection)

    run(shared_broker, body)


def test_connection_close_and_reopen(shared_broker: BrokerProcess) -> None:
    async def body(broker: BrokerProcess) -> None:
        name = unique("reopen")
        connection = await open_connection(broker)
        channel = await Channel.open(connection)
        await channel.call("queue_declare", name)
        channel.pika.basic_publish("", name, b"kept across connections")
        method, _, _ = await channel.get(name)  # unacked: requeued when the connection goes
        assert not method.redelivered
        await close_connection(connection)

        connection = await open_connection(broker)
        channel = await Channel.open(connection)
        method, _, payload = await channel.get(name, auto_ack=True)
        assert payload == b"kept across connections" and method.redelivered
        delete_ok = await channel.call("queue_delete", name, if_empty=True)
        assert delete_ok.message_count == 0
        await close_connection(connection)

    run(shared_broker, body)


def test_channel_error_is_reported_and_connection_survives(shared_broker: BrokerProcess) -> None:
    async def body(broker: BrokerProcess) -> None:
        connection = await open_connection(broker)
        channel = await Channel.open(connection)
        closed: asyncio.Future = asyncio.get_running_loop().create_future()
        channel.pika.add_on_close_callback(lambda _ch, reason: closed.set_result(reason))
        channel.pika.queue_declare(unique("missing"), passive=True)
        reason = await closed
        assert isinstance(reason, pika.exceptions.ChannelClosedByBroker)
        assert reason.reply_code == 404
        again = await Channel.open(connection)
        assert (await again.temporary_queue()).startswith("amq.gen-")
        await close_connection(connection)

    run(shared_broker, body)


def test_broker_shutdown_is_reported_as_connection_forced(broker: BrokerProcess) -> None:
    async def body(broker: BrokerProcess) -> None:
        connection = await open_connection(broker)
        channel = await Channel.open(connection)
        assert (await channel.temporary_queue()).startswith("amq.gen-")
        closed: asyncio.Future = asyncio.get_running_loop().create_future()
        connection.add_on_close_callback(lambda _conn, reason: closed.set_result(reason))
        # Stop the broker from a thread, so this loop keeps answering (close-ok).
        stopping = asyncio.get_running_loop().run_in_executor(None, broker.stop)
        reason = await closed
        assert await stopping == 0
        assert isinstance(reason, pika.exceptions.ConnectionClosedByBroker)
        assert reason.reply_code == 320
        assert "CONNECTION_FORCED" in reason.reply_text

    run(broker, body)
