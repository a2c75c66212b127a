"""In-broker consumers: prefetch flow control, settling, cancelling, events."""

from __future__ import annotations

import pytest
import trio

from plugmq.amqp.errors import AccessRefused, NotAllowed, PreconditionFailed
from plugmq.broker.broker import Broker
from plugmq.hookspecs import hookimpl
from plugmq.inbroker import Delivery, InBrokerClient, InBrokerConsumer, open_client


@pytest.fixture
def client(live_broker: Broker) -> InBrokerClient:
    client = open_client(live_broker)
    client.declare_queue("c.q", durable=True)
    return client


def _publish(client: InBrokerClient, count: int, queue: str = "c.q") -> None:
    for number in range(count):
        client.publish("", queue, b"%d" % number, properties={"delivery_mode": 2})


async def test_prefetch_bounds_a_memory_channel_that_never_overflows(
    client: InBrokerClient,
) -> None:
    send, receive = trio.open_memory_channel[Delivery](5)
    consumer = client.consume("c.q", send.send_nowait, prefetch=5)
    _publish(client, 50)
    assert consumer.unacked == 5
    assert client.declare_queue("c.q", passive=True).message_count == 45
    bodies = []
    with trio.fail_after(5):
        async for delivery in receive:
            bodies.append(delivery.body)
            assert delivery.exchange == "" and delivery.routing_key == "c.q"
            assert delivery.persistent and not delivery.redelivered
            delivery.ack()
            if len(bodies) == 50:
                break
    assert bodies == [b"%d" % n for n in range(50)]
    assert client.declare_queue("c.q", passive=True).message_count == 0


async def test_acks_are_journaled_like_a_channels(
    live_broker: Broker, client: InBrokerClient
) -> None:
    _publish(client, 3)
    await client.flush()
    got: list[Delivery] = []
    client.consume("c.q", got.append)
    written = live_broker.journal.records_written
    for delivery in got:
        delivery.ack()
    await client.flush()
    assert live_broker.journal.records_written == written + 3, "one removal per stored ack"


async def test_pause_and_resume(client: InBrokerClient) -> None:
    got: list[Delivery] = []
    consumer = client.consume("c.q", got.append, prefetch=0)
    consumer.pause()
    _publish(client, 3)
    assert got == []
    consumer.resume()
    assert [d.body for d in got] == [b"0", b"1", b"2"]


async def test_nack_requeues_and_reject_dead_letters(client: InBrokerClient) -> None:
    client.declare_exchange("dlx", "fanout")
    client.declare_queue("dead")
    client.bind_queue("dead", "dlx")
    client.declare_queue("w.q", arguments={"x-dead-letter-exchange": "dlx"})
    got: list[Delivery] = []
    consumer = client.consume("w.q", got.append, prefetch=1)
    _publish(client, 2, "w.q")
    got[0].nack()
    assert [(d.body, d.redelivered) for d in got] == [(b"0", False), (b"0", True)]
    got[1].reject()
    assert [d.body for d in got[2:]] == [b"1"]
    got[2].ack()
    with pytest.raises(PreconditionFailed, match="not awaiting an acknowledgement"):
        got[2].ack()
    assert client.declare_queue("dead", passive=True).message_count == 1
    assert consumer.unacked == 0


async def test_deleting_the_queue_cancels_and_tells_the_owner(
    live_broker: Broker, client: InBrokerClient
) -> None:
    cancelled: list[InBrokerConsumer] = []
    got: list[Delivery] = []
    consumer = client.consume("c.q", got.append, on_cancel=cancelled.append)
    _publish(client, 1)
    open_client(live_broker).delete_queue("c.q")
    assert cancelled == [consumer] and consumer.cancelled_by_broker
    with trio.fail_after(1):
        await consumer.cancelled.wait()
    got[0].ack()  # an unacked delivery of a deleted queue can still be settled


async def test_exclusive_consumers_and_tags(client: InBrokerClient) -> None:
    client.consume("c.q", lambda delivery: None, exclusive=True, tag="first")
    with pytest.raises(AccessRefused, match="exclusive use"):
        client.consume("c.q", lambda delivery: None)
    client.declare_queue("t.q")
    with pytest.raises(ValueError, match="prefetch -1"):
        client.consume("t.q", lambda delivery: None, prefetch=-1)
    with pytest.raises(NotAllowed, match="reuse consumer tag 'first'"):
        client.consume("t.q", lambda delivery: None, tag="first")


async def test_cancel_keeps_unacked_settleable_and_deletes_auto_delete_queues(
    client: InBrokerClient,
) -> None:
    client.declare_queue("auto.q", auto_delete=True)
    got: list[Delivery] = []
    consumer = client.consume("auto.q", got.append)
    client.publish("", "auto.q", b"x")
    consumer.cancel()
    assert consumer.cancelled.is_set() and not consumer.cancelled_by_broker
    assert client.publish("", "auto.q", b"y") == 0, "the auto-delete queue went with its consumer"
    got[0].ack()


async def test_a_failing_on_delivery_pauses_the_consumer_and_keeps_the_message(
    client: InBrokerClient,
) -> None:
    def broken(delivery: Delivery) -> None:
        raise trio.WouldBlock

    consumer = client.consume("c.q", broken, prefetch=10)
    _publish(client, 2)  # the publisher is not hurt
    assert consumer.paused and consumer.unacked == 0
    assert client.declare_queue("c.q", passive=True).message_count == 2


class EventRecorder:
    """A plugin recording consumer events (registered on the test's broker only)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    @hookimpl
    def plugmq_consumer_added(self, vhost: str, queue, consumer) -> None:
        self.events.append(("added", queue.name, consumer.tag))

    @hookimpl
    def plugmq_consumer_removed(self, vhost: str, queue, consumer) -> None:
        self.events.append(("removed", queue.name, consumer.tag))


async def test_consumer_events_fire_like_a_channels(
    live_broker: Broker, client: InBrokerClient
) -> None:
    recorder = EventRecorder()
    live_broker.plugins._pm.register(recorder)
    consumer = client.consume("c.q", lambda delivery: None, tag="watched")
    consumer.cancel()
    other = client.consume("c.q", lambda delivery: None, tag="closed")
    assert other.tag == "closed"
    client.close()
    assert recorder.events == [
        ("added", "c.q", "watched"),
        ("removed", "c.q", "watched"),
        ("added", "c.q", "closed"),
        ("removed", "c.q", "closed"),
    ]


async def test_a_no_ack_consumer_settles_on_delivery(
    live_broker: Broker, client: InBrokerClient
) -> None:
    got: list[Delivery] = []
    consumer = client.consume("c.q", got.append, no_ack=True, prefetch=1)
    _publish(client, 3)
    assert [d.body for d in got] == [b"0", b"1", b"2"], "prefetch does not bound no-ack"
    assert consumer.unacked == 0 and live_broker.memory.used == 0
    with pytest.raises(PreconditionFailed):
        got[0].ack()
