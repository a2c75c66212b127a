"""Channel-level details of RabbitMQ's dialect, checked with real clients against both brokers.

Every test runs against plugmq and the private RabbitMQ node (3.10, Debian's package) of
:mod:`conftest`, so each asserted behaviour is shown to be RabbitMQ's. Where RabbitMQ changed
its mind after 3.10 the test says which version plugmq follows and asserts both.

pika is the client where only reply codes matter; py-amqp (kombu's transport) where the
failing method's class and method ids matter, as it is the client that reports them
(``method_sig``). Every wait is bounded by the clients' own socket timeouts.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import amqp
import pika
import pytest
from aio_pika.patterns import RPC
from pika.adapters.asyncio_connection import AsyncioConnection

from plugmq.amqp import constants as C

TIMEOUT = 10.0


def pika_connection(url: str) -> pika.BlockingConnection:
    """A pika blocking connection to ``url`` (one attempt)."""
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = TIMEOUT
    return pika.BlockingConnection(parameters)


def amqp_connection(url: str) -> amqp.Connection:
    """A py-amqp connection to ``url``, connected."""
    parts = urlsplit(url)
    connection = amqp.Connection(
        f"{parts.hostname}:{parts.port}",
        userid=parts.username,
        password=parts.password,
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
        write_timeout=TIMEOUT,
    )
    connection.connect()
    return connection


def closed_by_broker(call: Any, *args: Any, **kwargs: Any) -> pika.exceptions.ChannelClosedByBroker:
    """Run a pika channel call that must close the channel; return the close."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        call(*args, **kwargs)
    return raised.value


# -- 3. unbind is idempotent ------------------------------------------------------------------


def test_unbind_of_a_vanished_queue_exchange_or_binding_answers_unbind_ok(
    amqp_url: str, name: str
) -> None:
    # RabbitMQ 3.x rabbit_binding:remove: a missing source, destination or binding is ok.
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        queue = channel.queue_declare(f"{name}.auto", auto_delete=True).method.queue
        channel.exchange_declare(name, "direct", auto_delete=False)
        channel.queue_bind(queue, name, "k")
        tag = channel.basic_consume(queue, lambda *_: None)
        channel.basic_cancel(tag)  # the auto-delete queue goes with its last consumer
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
            channel.queue_declare(queue, passive=True)
        assert gone.value.reply_code == C.NOT_FOUND
        channel = connection.channel()
        assert isinstance(channel.queue_unbind(queue, name, "k").method, pika.spec.Queue.UnbindOk)
        other = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_unbind(other, name, "never-bound")
        channel.queue_unbind(other, f"{name}.no-such-exchange", "k")
        channel.exchange_unbind(f"{name}.no-such-destination", name, "k")
        channel.exchange_unbind(name, f"{name}.no-such-source", "k")
        # The channel is still open and works.
        channel.basic_publish("", other, b"still open")
        assert channel.basic_get(other, auto_ack=True)[2] == b"still open"
        channel.exchange_delete(name)


def test_aio_pika_rpc_pattern_opens_and_closes_repeatedly(amqp_url: str, name: str) -> None:
    # aio_pika.patterns.RPC.close cancels its consumer (the auto-delete reply queue and its
    # auto-delete DLX exchange vanish), then unbinds and deletes them: it needs idempotent
    # unbind and delete to close cleanly.
    async def multiply(*, x: int) -> int:
        return x * 6

    async def body() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            server = await RPC.create(await connection.channel())
            await server.register(name, multiply, auto_delete=True)
            for round_number in range(3):
                channel = await connection.channel()
                client = await RPC.create(channel)
                assert await client.proxy.__getattr__(name)(x=round_number + 7) == (
                    (round_number + 7) * 6
                )
                await client.close()
                assert not channel.is_closed, "closing the RPC closed its channel"
                await channel.close()
            await server.close()

    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT * 2):
            await body()

    asyncio.run(bounded())


def test_unbind_from_the_default_exchange_is_still_refused(amqp_url: str) -> None:
    # rabbit_channel:binding_action checks the default exchange before looking anything up.
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        close = closed_by_broker(channel.queue_unbind, queue, "", queue)
        assert close.reply_code == C.ACCESS_REFUSED


# -- 4. queue.delete ordering ------------------------------------------------------------------


def test_queue_delete_ok_comes_before_the_cancel_of_the_deleting_channels_consumer(
    amqp_url: str, name: str
) -> None:
    # pika's asyncio adapter runs callbacks in frame order, so the order they ran in is the
    # order the broker sent the frames in.
    async def body() -> list[str]:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future = loop.create_future()
        parameters = pika.URLParameters(amqp_url)
        parameters.connection_attempts = 1
        connection = AsyncioConnection(
            parameters,
            on_open_callback=opened.set_result,
            on_open_error_callback=lambda _c, error: opened.set_exception(error),
            custom_ioloop=loop,
        )
        await opened
        channel_ready: asyncio.Future = loop.create_future()
        connection.channel(on_open_callback=channel_ready.set_result)
        channel = await channel_ready
        events: list[str] = []
        done: asyncio.Future = loop.create_future()

        def event(label: str) -> None:
            events.append(label)
            if len(events) == 2:
                done.set_result(None)

        channel.add_on_cancel_callback(lambda _frame: event("basic.cancel"))
        declared: asyncio.Future = loop.create_future()
        channel.queue_declare(name, callback=declared.set_result)
        await declared
        consuming: asyncio.Future = loop.create_future()
        channel.basic_consume(name, lambda *_: None, callback=consuming.set_result)
        await consuming
        channel.queue_delete(name, callback=lambda _frame: event("queue.delete-ok"))
        await done
        connection.close()
        return events

    async def bounded() -> list[str]:
        async with asyncio.timeout(TIMEOUT):
            return await body()

    assert asyncio.run(bounded()) == ["queue.delete-ok", "basic.cancel"]


# -- 7. reply codes and class ids -------------------------------------------------------------


def test_owner_redeclaring_its_exclusive_queue_as_shared_is_resource_locked(
    amqp_url: str, name: str
) -> None:
    # rabbit_amqqueue:assert_equivalence uses the strict exclusivity check: 405, not 406.
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        queue = channel.queue_declare(name, exclusive=True).method.queue
        close = closed_by_broker(channel.queue_declare, queue, exclusive=False)
        assert close.reply_code == C.RESOURCE_LOCKED


def test_redeclaring_a_shared_queue_as_exclusive_is_resource_locked(
    amqp_url: str, name: str
) -> None:
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        channel.queue_declare(name, auto_delete=True)
        close = closed_by_broker(channel.queue_declare, name, exclusive=True, auto_delete=True)
        assert close.reply_code == C.RESOURCE_LOCKED
        connection.channel().queue_delete(name)


def test_redeclaring_a_server_named_queue_by_name_is_access_refused(amqp_url: str) -> None:
    # rabbit_channel:check_name runs before the lookup: even an existing amq.gen-* queue.
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        assert queue.startswith("amq.gen-")
        close = closed_by_broker(channel.queue_declare, queue, exclusive=True)
        assert close.reply_code == C.ACCESS_REFUSED
        # A passive declare of it is fine.
        channel = connection.channel()
        assert channel.queue_declare(queue, passive=True).method.queue == queue


@pytest.mark.parametrize(
    ("operation", "arguments"),
    [
        ("exchange_declare", {"exchange": "", "passive": True}),
        ("exchange_declare", {"exchange": "", "exchange_type": "direct"}),
        ("exchange_delete", {"exchange": ""}),
        ("exchange_bind", {"destination": "", "source": "amq.direct", "routing_key": "k"}),
        ("exchange_bind", {"destination": "amq.fanout", "source": "", "routing_key": "k"}),
    ],
)
def test_operations_on_the_default_exchange_are_access_refused(
    amqp_url: str, operation: str, arguments: dict[str, Any]
) -> None:
    # rabbit_channel:check_not_default_exchange: 403, also for a passive declare.
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        close = closed_by_broker(getattr(channel, operation), **arguments)
        assert close.reply_code == C.ACCESS_REFUSED
        assert "default exchange" in close.reply_text


def test_deleting_a_system_exchange_is_access_refused(amqp_url: str) -> None:
    with pika_connection(amqp_url) as connection:
        close = closed_by_broker(connection.channel().exchange_delete, "amq.direct")
        assert close.reply_code == C.ACCESS_REFUSED
        assert "deletion of system exchange 'amq.direct'" in close.reply_text


@pytest.mark.parametrize(
    ("operation", "signature"),
    [
        (lambda channel, queue: channel.basic_consume(queue, callback=print), (60, 20)),
        (lambda channel, queue: channel.basic_get(queue), (60, 70)),
        (lambda channel, queue: channel.queue_bind(queue, "amq.direct", "k"), (50, 20)),
        (lambda channel, queue: channel.queue_purge(queue), (50, 30)),
        (lambda channel, queue: channel.exchange_bind(queue, "amq.direct", "k"), (40, 30)),
    ],
    ids=["basic.consume", "basic.get", "queue.bind", "queue.purge", "exchange.bind"],
)
def test_a_close_names_the_class_and_method_that_failed(
    amqp_url: str, name: str, operation: Any, signature: tuple[int, int]
) -> None:
    connection = amqp_connection(amqp_url)
    try:
        with pytest.raises(amqp.exceptions.NotFound) as raised:
            operation(connection.channel(), f"{name}.missing")
        assert raised.value.method_sig == signature
    finally:
        connection.close()


def test_a_bad_headers_binding_names_queue_bind(amqp_url: str) -> None:
    connection = amqp_connection(amqp_url)
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).queue
        with pytest.raises(amqp.exceptions.PreconditionFailed) as raised:
            channel.queue_bind(queue, "amq.headers", "", arguments={"x-match": "some"})
        assert raised.value.method_sig == (50, 20)
    finally:
        connection.close()


def test_an_unknown_exchange_type_is_precondition_failed(
    amqp_url: str, broker_kind: str, name: str
) -> None:
    # RabbitMQ 3.13+ (rabbit_exchange:check_type): 406, a channel error. 3.10-3.12 closed the
    # connection with 503; plugmq follows the current rule.
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        if broker_kind == "rabbitmq":
            with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as raised:
                channel.exchange_declare(name, "no-such-type")
            assert raised.value.reply_code == C.COMMAND_INVALID
            return
        close = closed_by_broker(channel.exchange_declare, name, "no-such-type")
        assert close.reply_code == C.PRECONDITION_FAILED
        assert "unknown exchange type 'no-such-type'" in close.reply_text
        assert connection.channel().is_open


def test_channel_max_limits_open_channels_not_their_numbers(amqp_url: str) -> None:
    # rabbit_reader:create_channel counts channels; RabbitMQ opens 65535 under channel_max 2047.
    with pika_connection(amqp_url) as connection:
        assert connection._impl.params.channel_max == 2047  # negotiated down from 65535
        channel = connection.channel(channel_number=65535)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"on channel 65535")
        assert channel.basic_get(queue, auto_ack=True)[2] == b"on channel 65535"
