"""Dead-lettering: x-dead-letter-exchange / -routing-key and the headers RabbitMQ writes.

The expected headers are those a RabbitMQ 3.10.8 node writes (``rabbit_dead_letter:make_msg``,
https://www.rabbitmq.com/dlx.html): ``x-death`` is an array of tables, newest first, one per
(queue, reason) with ``count``, ``reason``, ``queue``, ``time``, ``exchange``,
``routing-keys`` and ``original-expiration``; the ``x-first-death-*`` headers are set once; the
``expiration`` property is removed; ``CC`` is removed when the routing key is replaced.
"""

from __future__ import annotations

import datetime

import pika
import trio
from support.broker_process import BrokerProcess
from support.polling import await_for, wait_for

from plugmq.client import connect as trio_connect

TIMEOUT = 10


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def setup_dlx(channel, prefix: str, **arguments) -> tuple[str, str]:
    """A fanout DLX with a queue bound to it, and a source queue dead-lettering to it."""
    channel.exchange_declare(f"{prefix}-dlx", "fanout", auto_delete=True)
    channel.queue_declare(f"{prefix}-dead", exclusive=True)
    channel.queue_bind(f"{prefix}-dead", f"{prefix}-dlx")
    source_args = {"x-dead-letter-exchange": f"{prefix}-dlx", **arguments}
    channel.queue_declare(f"{prefix}-src", exclusive=True, arguments=source_args)
    return f"{prefix}-src", f"{prefix}-dead"


def get_dead(channel, queue: str):
    return wait_for(lambda: (got := channel.basic_get(queue, auto_ack=True))[0] and got)


def assert_recent(moment: datetime.datetime) -> None:
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - moment).total_seconds()) < 60


def test_rejected_message_is_dead_lettered_with_x_death(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        source, dead = setup_dlx(channel, "dl-rej")
        properties = pika.BasicProperties(
            headers={"h": 1}, expiration="60000", message_id="m1", delivery_mode=2
        )
        channel.basic_publish("", source, b"body", properties)
        method = wait_for(lambda: channel.basic_get(source)[0])
        channel.basic_reject(method.delivery_tag, requeue=False)
        got, props, body = get_dead(channel, dead)
        assert (got.exchange, got.routing_key, got.redelivered, body) == (
            "dl-rej-dlx", source, False, b"body",
        )  # fmt: skip
        assert (props.message_id, props.delivery_mode, props.expiration) == ("m1", 2, None)
        headers = props.headers
        assert list(headers) == [
            "h", "x-death", "x-first-death-exchange", "x-first-death-queue",
            "x-first-death-reason",
        ]  # fmt: skip
        (death,) = headers["x-death"]
        assert list(death) == [
            "count", "reason", "queue", "time", "exchange", "routing-keys", "original-expiration",
        ]  # fmt: skip
        assert_recent(death.pop("time"))
        assert death == {
            "count": 1, "reason": "rejected", "queue": source, "exchange": "",
            "routing-keys": [source], "original-expiration": "60000",
        }  # fmt: skip
        assert (headers["x-first-death-reason"], headers["x-first-death-queue"]) == (
            "rejected", source,
        )  # fmt: skip
        assert headers["x-first-death-exchange"] == ""
        assert queue_count(channel, source) == 0


def queue_count(channel, name: str) -> int:
    return channel.queue_declare(name, passive=True).method.message_count


def test_second_death_in_the_same_queue_increments_count(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        source, dead = setup_dlx(channel, "dl-twice")
        channel.basic_publish("", source, b"x")
        channel.basic_nack(
            wait_for(lambda: channel.basic_get(source)[0]).delivery_tag, requeue=False
        )
        _, props, _ = get_dead(channel, dead)
        channel.basic_publish("", source, b"x", pika.BasicProperties(headers=props.headers))
        channel.basic_nack(
            wait_for(lambda: channel.basic_get(source)[0]).delivery_tag, requeue=False
        )
        _, props, _ = get_dead(channel, dead)
        (death,) = props.headers["x-death"]
        # An incremented table has its keys sorted (rabbit_misc:sort_field_table).
        assert list(death) == sorted(death)
        assert (death["count"], death["reason"], death["queue"]) == (2, "rejected", source)


async def test_expired_message_dead_lettered_with_routing_key_and_cc(
    shared_broker: BrokerProcess,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio_connect(shared_broker.url) as conn, conn.channel() as ch:
            await ch.exchange_declare("dl-exp-dlx", "direct", auto_delete=True)
            dead = (await ch.queue_declare("", exclusive=True)).name
            await ch.queue_bind(dead, "dl-exp-dlx", "retry")
            arguments = {
                "x-message-ttl": 30,
                "x-dead-letter-exchange": "dl-exp-dlx",
                "x-dead-letter-routing-key": "retry",
            }
            source = (await ch.queue_declare("", exclusive=True, arguments=arguments)).name
            await ch.publish("", source, b"cc", {"headers": {"CC": ["other"]}})
            await ch.publish("", source, b"own", {"expiration": "10"})

            async def dead_letters() -> list:
                return [m async for m in _drain(ch, dead)]

            got = await await_for(dead_letters)
            got += await _wait_more(ch, dead, 2 - len(got))
            assert [(m.body, m.routing_key, m.exchange) for m in got] == [
                (b"cc", "retry", "dl-exp-dlx"), (b"own", "retry", "dl-exp-dlx"),
            ]  # fmt: skip
            first, second = (m.properties.headers for m in got)
            assert "CC" not in first
            assert first["x-death"][0]["routing-keys"] == [source, "other"]
            assert first["x-death"][0]["reason"] == "expired"
            assert "original-expiration" not in first["x-death"][0]
            assert second["x-death"][0]["original-expiration"] == "10"
            assert got[1].properties.expiration is None


async def _drain(ch, queue: str):
    while (message := await ch.get(queue, no_ack=True)) is not None:
        yield message


async def _wait_more(ch, queue: str, missing: int) -> list:
    more: list = []

    async def enough() -> bool:
        more.extend([m async for m in _drain(ch, queue)])
        return len(more) >= missing

    if missing > 0:
        await await_for(enough)
    return more


def test_automatic_cycle_is_dropped_but_reject_cycle_is_not(shared_broker: BrokerProcess) -> None:
    """A message expiring back into the queue it died in is dropped (RabbitMQ's cycle rule);
    a rejection in the loop makes it a deliberate retry, which is allowed."""
    with connect(shared_broker) as connection:
        channel = connection.channel()
        loop = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dl-loop"}
        channel.queue_declare("dl-loop", exclusive=True, arguments={**loop, "x-message-ttl": 20})
        channel.basic_publish("", "dl-loop", b"expires")
        wait_for(lambda: queue_count(channel, "dl-loop") == 0)
        channel.queue_delete("dl-loop")
        channel.queue_declare("dl-loop", exclusive=True, arguments=loop)
        channel.basic_publish("", "dl-loop", b"rejected")
        method = wait_for(lambda: channel.basic_get("dl-loop")[0])
        channel.basic_reject(method.delivery_tag, requeue=False)
        _, props, body = get_dead(channel, "dl-loop")
        assert body == b"rejected" and props.headers["x-death"][0]["count"] == 1


def test_missing_dead_letter_exchange_drops_the_message(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker) as connection:
        channel = connection.channel()
        arguments = {"x-dead-letter-exchange": "dl-nowhere"}
        name = channel.queue_declare("", exclusive=True, arguments=arguments).method.queue
        channel.basic_publish("", name, b"x")
        channel.basic_reject(wait_for(lambda: channel.basic_get(name)[0]).delivery_tag, False)
        assert queue_count(channel, name) == 0


def test_dead_lettered_persistent_message_survives_kill_9(durable_broker: BrokerProcess) -> None:
    """The dead-letter copy is a new persistent message journaled on the durable DLX queue;
    the original's removal is journaled too, so after kill -9 it is only in the DLX queue."""
    with connect(durable_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("dl-durable-dlx", "fanout", durable=True)
        channel.queue_declare("dl-durable-dead", durable=True)
        channel.queue_bind("dl-durable-dead", "dl-durable-dlx")
        arguments = {"x-dead-letter-exchange": "dl-durable-dlx"}
        channel.queue_declare("dl-durable-src", durable=True, arguments=arguments)
        channel.confirm_delivery()
        channel.basic_publish("", "dl-durable-src", b"keep", pika.BasicProperties(delivery_mode=2))
        method = wait_for(lambda: channel.basic_get("dl-durable-src")[0])
        channel.basic_reject(method.delivery_tag, requeue=False)
        channel.basic_publish("", "dl-durable-src", b"sync", pika.BasicProperties(delivery_mode=2))
    durable_broker.kill()
    durable_broker.restart()
    with connect(durable_broker) as connection:
        channel = connection.channel()
        method, props, body = channel.basic_get("dl-durable-dead", auto_ack=True)
        assert body == b"keep" and method.exchange == "dl-durable-dlx"
        assert props.headers["x-death"][0]["reason"] == "rejected"
        assert props.delivery_mode == 2
        assert channel.basic_get("dl-durable-src", auto_ack=True)[2] == b"sync"
        assert channel.basic_get("dl-durable-src")[0] is None
