"""Direct reply-to (``amq.rabbitmq.reply-to``) with real clients, against plugmq and RabbitMQ.

Requesters consume from the pseudo-queue in no-ack mode and publish requests whose
``reply_to`` is the pseudo-queue's name; responders reply through the default exchange to the
name the broker substituted (https://www.rabbitmq.com/docs/direct-reply-to). Each test runs
against both brokers of :mod:`conftest` (the RabbitMQ node is 3.10), so the rules asserted
are RabbitMQ's; the one place where plugmq chose differently (mandatory replies) says so.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import aio_pika
import kombu
import pika
import pytest
import trio

from plugmq.amqp import constants as C
from plugmq.client import connect

TIMEOUT = 10.0
PSEUDO_QUEUE = "amq.rabbitmq.reply-to"


def pika_connection(url: str) -> pika.BlockingConnection:
    """A pika blocking connection to ``url`` (one attempt)."""
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = TIMEOUT
    return pika.BlockingConnection(parameters)


def next_delivery(connection: pika.BlockingConnection, inbox: list) -> tuple:
    """Process events until ``inbox`` (filled by a consumer callback) has an entry."""
    connection.process_data_events(time_limit=0)
    deadline = TIMEOUT
    while not inbox and deadline > 0:
        connection.process_data_events(time_limit=0.05)
        deadline -= 0.05
    assert inbox, "nothing arrived"
    return inbox.pop(0)


def closed_by_broker(call, *args, **kwargs) -> pika.exceptions.ChannelClosedByBroker:
    """Run a pika channel call that must close the channel; return the close."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        call(*args, **kwargs)
    return raised.value


def test_the_broker_announces_direct_reply_to(amqp_url: str) -> None:
    with pika_connection(amqp_url) as connection:
        capabilities = connection._impl.server_capabilities
        assert capabilities["direct_reply_to"] is True


def test_pika_rpc_round_trip(amqp_url: str, name: str) -> None:
    # The RabbitMQ tutorial's RPC, with direct reply-to instead of a reply queue.
    with pika_connection(amqp_url) as server, pika_connection(amqp_url) as client:
        server_channel = server.channel()
        server_channel.queue_declare(name, auto_delete=True)
        client_channel = client.channel()
        replies: list = []
        client_channel.basic_consume(
            PSEUDO_QUEUE, lambda _ch, m, p, body: replies.append((m, p, body)), auto_ack=True
        )
        correlation = uuid.uuid4().hex
        client_channel.basic_publish(
            "",
            name,
            b"6",
            pika.BasicProperties(reply_to=PSEUDO_QUEUE, correlation_id=correlation),
        )
        method, properties, body = next(server_channel.consume(name, inactivity_timeout=TIMEOUT))
        assert properties.reply_to.startswith(PSEUDO_QUEUE + ".")
        assert properties.correlation_id == correlation  # the rest is untouched
        # The responder can check that its requester is still there (0 messages, 1 consumer).
        check = server.channel().queue_declare(properties.reply_to, passive=True).method
        assert (check.message_count, check.consumer_count) == (0, 1)
        server_channel.basic_publish(
            "",
            properties.reply_to,
            b"%d" % (int(body) * 7),
            pika.BasicProperties(correlation_id=properties.correlation_id),
        )
        server_channel.basic_ack(method.delivery_tag)
        server_channel.cancel()
        reply_method, reply_properties, reply_body = next_delivery(client, replies)
        assert reply_body == b"42"
        assert reply_properties.correlation_id == correlation
        assert reply_method.routing_key == properties.reply_to
        assert reply_method.exchange == ""
        assert not reply_method.redelivered


def test_publishing_a_direct_reply_request_needs_a_reply_consumer(amqp_url: str) -> None:
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        channel.basic_publish("", "nowhere", b"x", pika.BasicProperties(reply_to=PSEUDO_QUEUE))
        close = closed_by_broker(channel.queue_declare, "", exclusive=True)
        assert close.reply_code == C.PRECONDITION_FAILED
        assert "fast reply consumer does not exist" in close.reply_text


def test_the_reply_consumer_must_be_no_ack_and_single(amqp_url: str) -> None:
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        close = closed_by_broker(channel.basic_consume, PSEUDO_QUEUE, print, auto_ack=False)
        assert close.reply_code == C.PRECONDITION_FAILED
        assert "reply consumer cannot acknowledge" in close.reply_text
        channel = connection.channel()
        channel.basic_consume(PSEUDO_QUEUE, print, auto_ack=True)
        close = closed_by_broker(channel.basic_consume, PSEUDO_QUEUE, print, auto_ack=True)
        assert close.reply_code == C.PRECONDITION_FAILED
        assert "reply consumer already set" in close.reply_text


def test_declares_of_reply_names_are_passive(amqp_url: str) -> None:
    with pika_connection(amqp_url) as connection:
        channel = connection.channel()
        for passive in (True, False):
            ok = channel.queue_declare(PSEUDO_QUEUE, passive=passive).method
            assert ok.queue == PSEUDO_QUEUE
        # (A reply name whose consumer is gone is 404: see the cancelled consumer's test.)


def test_a_cancelled_reply_consumer_gets_no_more_replies(amqp_url: str) -> None:
    with pika_connection(amqp_url) as requester, pika_connection(amqp_url) as responder:
        channel = requester.channel()
        tag = channel.basic_consume(PSEUDO_QUEUE, print, auto_ack=True)
        probe = requester.channel()
        # Learn the reply name the way a responder does: from a request.
        queue = probe.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"req", pika.BasicProperties(reply_to=PSEUDO_QUEUE))
        reply_to = None
        while reply_to is None:
            got = probe.basic_get(queue, auto_ack=True)
            reply_to = got[1].reply_to if got[0] else None
        channel.basic_cancel(tag)
        responder_channel = responder.channel()
        # The name is gone with its consumer.
        close = closed_by_broker(responder_channel.queue_declare, reply_to, passive=True)
        assert close.reply_code == C.NOT_FOUND
        responder_channel = responder.channel()
        responder_channel.confirm_delivery()
        # A mandatory reply nobody can receive is returned. (RabbitMQ 3.x returns every
        # mandatory reply, delivered or not, 4.x none; plugmq returns exactly these.)
        with pytest.raises(pika.exceptions.UnroutableError):
            responder_channel.basic_publish("", reply_to, b"late", mandatory=True)
        # Without mandatory a late reply is dropped, and confirmed.
        responder_channel.basic_publish("", reply_to, b"late")


def test_aio_pika_rpc_with_direct_reply_to(amqp_url: str, name: str) -> None:
    async def body() -> None:
        server = await aio_pika.connect(amqp_url)
        client = await aio_pika.connect(amqp_url)
        async with server, client:
            server_channel = await server.channel()
            requests = await server_channel.declare_queue(name, auto_delete=True)

            async def serve(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    await server_channel.default_exchange.publish(
                        aio_pika.Message(
                            message.body.upper(), correlation_id=message.correlation_id
                        ),
                        routing_key=message.reply_to,
                    )

            await requests.consume(serve)
            client_channel = await client.channel()
            reply_queue = await client_channel.get_queue(PSEUDO_QUEUE, ensure=True)
            replies: asyncio.Queue = asyncio.Queue()
            await reply_queue.consume(replies.put, no_ack=True)
            for number in range(5):
                await client_channel.default_exchange.publish(
                    aio_pika.Message(
                        b"hello %d" % number, reply_to=PSEUDO_QUEUE, correlation_id=str(number)
                    ),
                    routing_key=name,
                )
            got = [await replies.get() for _ in range(5)]
            assert [m.body for m in got] == [b"HELLO %d" % n for n in range(5)]
            assert [m.correlation_id for m in got] == [str(n) for n in range(5)]

    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT):
            await body()

    asyncio.run(bounded())


def test_kombu_rpc_with_direct_reply_to(amqp_url: str, name: str) -> None:
    parts = urlsplit(amqp_url)
    url = f"amqp://{parts.username}:{parts.password}@{parts.hostname}:{parts.port}//"
    with kombu.Connection(url) as server, kombu.Connection(url) as client:
        requests = kombu.Queue(name, routing_key=name, auto_delete=True)
        server_channel = server.channel()
        requests(server_channel).declare()
        replies: list = []
        reply_queue = kombu.Queue(PSEUDO_QUEUE, no_declare=True)
        with kombu.Consumer(
            client, [reply_queue], callbacks=[lambda b, m: replies.append((b, m))], no_ack=True
        ):
            client.Producer().publish(
                {"x": 20}, routing_key=name, reply_to=PSEUDO_QUEUE, correlation_id="c1"
            )

            def serve(payload: dict, message: kombu.Message) -> None:
                kombu.Producer(server_channel).publish(
                    {"y": payload["x"] + 22},
                    routing_key=message.properties["reply_to"],
                    correlation_id=message.properties["correlation_id"],
                )
                message.ack()

            with kombu.Consumer(server_channel, [requests], callbacks=[serve]):
                server.drain_events(timeout=TIMEOUT)
            client.drain_events(timeout=TIMEOUT)
        (payload, message), *_ = replies
        assert payload == {"y": 42}
        assert message.properties["correlation_id"] == "c1"


def test_a_delivered_mandatory_reply_is_confirmed_not_returned(
    amqp_url: str, broker_kind: str
) -> None:
    # RabbitMQ 4.x's rule: a reply name counts as routed. 3.x returned every mandatory reply
    # (and delivered it too), which made mandatory useless for replies; the 3.10 node shows it.
    with pika_connection(amqp_url) as requester, pika_connection(amqp_url) as responder:
        channel = requester.channel()
        replies: list = []
        channel.basic_consume(PSEUDO_QUEUE, lambda *delivery: replies.append(delivery), True)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"req", pika.BasicProperties(reply_to=PSEUDO_QUEUE))
        reply_to = None
        while reply_to is None:
            got = channel.basic_get(queue, auto_ack=True)
            reply_to = got[1].reply_to if got[0] else None
        responder_channel = responder.channel()
        responder_channel.confirm_delivery()
        if broker_kind == "rabbitmq":
            with pytest.raises(pika.exceptions.UnroutableError):
                responder_channel.basic_publish("", reply_to, b"answer", mandatory=True)
        else:
            responder_channel.basic_publish("", reply_to, b"answer", mandatory=True)
        assert next_delivery(requester, replies)[3] == b"answer"


def test_replies_to_a_requester_that_does_not_read_are_dropped_not_buffered(
    plugmq_url: str,
) -> None:
    # plugmq's bound (RabbitMQ 3.x buffers without limit): above 8 MiB of unread output the
    # requester's replies are dropped; what arrives is in order and intact, and once the
    # requester reads again replies flow.
    size, count = 512 * 1024, 64
    with pika_connection(plugmq_url) as requester, pika_connection(plugmq_url) as responder:
        channel = requester.channel()
        replies: list = []
        channel.basic_consume(PSEUDO_QUEUE, lambda *delivery: replies.append(delivery), True)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"req", pika.BasicProperties(reply_to=PSEUDO_QUEUE))
        reply_to = None
        while reply_to is None:
            got = channel.basic_get(queue, auto_ack=True)
            reply_to = got[1].reply_to if got[0] else None
        replies.clear()
        # The requester stops reading its socket: pika reads only inside its calls.
        sender = responder.channel()
        sender.confirm_delivery()  # each confirm: the broker has delivered or dropped it
        for number in range(count):
            sender.basic_publish("", reply_to, b"%04d" % number + b"." * (size - 4))
        # Now read until nothing more arrives; then the backlog is gone and replies flow.
        seen = -1
        while len(replies) != seen:
            seen = len(replies)
            requester.process_data_events(time_limit=0.5)
        numbers = [int(body[:4]) for *_, body in replies]
        assert all(len(body) == size for *_, body in replies)
        assert numbers == sorted(set(numbers))
        assert 0 < len(numbers) < count, f"{len(numbers)} of {count} arrived"
        replies.clear()
        sender.basic_publish("", reply_to, b"after")
        assert next_delivery(requester, replies)[3] == b"after"


async def test_plugmq_client_rpc_with_direct_reply_to(amqp_url: str, name: str) -> None:
    # The trio client, as the admin CLI uses it: no reply queue is declared.
    with trio.fail_after(TIMEOUT):
        async with (
            connect(amqp_url) as server,
            connect(amqp_url) as client,
            server.channel() as server_channel,
            client.channel() as client_channel,
        ):
            await server_channel.queue_declare(name, auto_delete=True)
            replies = await client_channel.start_consumer(PSEUDO_QUEUE, no_ack=True)
            await client_channel.publish(
                "", name, b"ping", {"reply_to": PSEUDO_QUEUE, "correlation_id": "c7"}
            )
            async with server_channel.consume(name) as requests:
                async for request in requests:
                    await server_channel.publish(
                        "",
                        request.properties.reply_to,
                        b"pong",
                        {"correlation_id": request.properties.correlation_id},
                    )
                    await request.ack()
                    break
            async for reply in replies:
                assert (reply.body, reply.properties.correlation_id) == (b"pong", "c7")
                assert reply.routing_key.startswith(PSEUDO_QUEUE + ".")
                break
