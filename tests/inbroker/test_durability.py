"""on_durable: once, when the message is durable everywhere it went, or settled before that."""

from __future__ import annotations

import pytest
import trio

from plugmq.broker.broker import Broker
from plugmq.inbroker import InBrokerClient, open_client, open_internal_client

PERSISTENT = {"delivery_mode": 2}


@pytest.fixture
def client(live_broker: Broker) -> InBrokerClient:
    client = open_client(live_broker)
    client.declare_queue("durable.q", durable=True)
    return client


async def test_a_persistent_message_is_reported_once_the_store_has_it(
    live_broker: Broker, client: InBrokerClient
) -> None:
    await client.flush()
    calls: list[bool] = []
    client.publish("", "durable.q", b"m", properties=PERSISTENT, on_durable=calls.append)
    assert calls == [], "the BDB writer has not run yet: nothing may be reported"
    assert live_broker.journal.durable_seq < live_broker.journal.last_seq
    await client.flush()
    assert calls == [True]
    await client.flush()
    assert calls == [True], "exactly once"


async def test_what_needs_no_storing_is_reported_at_once(client: InBrokerClient) -> None:
    client.declare_queue("plain.q")
    calls: list[bool] = []
    client.publish("", "durable.q", b"transient", on_durable=calls.append)
    client.publish("", "plain.q", b"x", properties=PERSISTENT, on_durable=calls.append)
    assert client.publish("", "nowhere", b"unroutable", on_durable=calls.append) == 0
    assert calls == [True, True, True]


async def test_many_publishes_each_get_their_callback_in_order(client: InBrokerClient) -> None:
    calls: list[int] = []
    for number in range(500):
        client.publish(
            "",
            "durable.q",
            b"%d" % number,
            properties=PERSISTENT,
            on_durable=lambda ok, n=number: calls.append(n if ok else -n),
        )
    await client.flush()
    assert calls == list(range(500))


async def test_a_message_consumed_before_the_write_is_reported_at_its_ack(
    live_broker: Broker, client: InBrokerClient
) -> None:
    await client.flush()
    deliveries = []
    client.consume("durable.q", deliveries.append, prefetch=10)
    calls: list[bool] = []
    client.publish("", "durable.q", b"m", properties=PERSISTENT, on_durable=calls.append)
    assert calls == [] and len(deliveries) == 1
    deliveries[0].ack()  # before the writer took the enqueue: both records cancel out
    assert calls == [True]
    annihilated = live_broker.journal.annihilated
    await client.flush()
    assert calls == [True] and annihilated >= 1


async def test_a_consumer_acking_inside_on_delivery_settles_the_publish_at_once(
    client: InBrokerClient,
) -> None:
    await client.flush()
    client.consume("durable.q", lambda delivery: delivery.ack(), prefetch=10)
    calls: list[bool] = []
    client.publish("", "durable.q", b"m", properties=PERSISTENT, on_durable=calls.append)
    assert calls == [True]


async def test_a_refused_publish_is_reported_not_ok(client: InBrokerClient) -> None:
    arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
    client.declare_queue("bounded", durable=True, arguments=arguments)
    calls: list[bool] = []
    client.publish("", "bounded", b"1", properties=PERSISTENT, on_durable=calls.append)
    client.publish("", "bounded", b"2", properties=PERSISTENT, on_durable=calls.append)
    assert calls == [False], "the refusal is known at once"
    await client.flush()
    assert calls == [False, True]
    assert await client.publish_durably("", "bounded", b"3", properties=PERSISTENT) is False
    assert client.declare_queue("bounded", passive=True).message_count == 1


async def test_publish_durably_waits_for_the_store(
    live_broker: Broker, client: InBrokerClient
) -> None:
    assert await client.publish_durably("", "durable.q", b"m", properties=PERSISTENT)
    assert live_broker.journal.durable_seq == live_broker.journal.last_seq


async def test_a_failing_callback_is_logged_and_the_broker_goes_on(
    live_broker: Broker, client: InBrokerClient
) -> None:
    def broken(ok: bool) -> None:
        raise RuntimeError("plugin bug")

    client.publish("", "durable.q", b"m", properties=PERSISTENT, on_durable=broken)
    await client.flush()
    internal = open_internal_client(live_broker)
    with trio.fail_after(5):
        assert await internal.publish_durably("", "durable.q", b"n", properties=PERSISTENT)


class _HoldingGate:
    """A durability gate the test releases or fails by hand (the replication seam)."""

    name = "test"

    def __init__(self) -> None:
        self.written_upto = 0

    def written(self, upto_seq: int, records: object) -> None:
        self.written_upto = upto_seq


async def test_a_gate_holds_on_durable_and_a_failed_record_reports_false(
    live_broker: Broker, client: InBrokerClient
) -> None:
    await client.flush()
    gate = _HoldingGate()
    live_broker.add_durability_gate(gate)
    try:
        calls: list[bool] = []
        client.publish("", "durable.q", b"held", properties=PERSISTENT, on_durable=calls.append)
        seq = live_broker.journal.last_seq
        with trio.fail_after(10):
            while gate.written_upto < seq:
                await trio.sleep(0.01)
        assert calls == [], "written by the store, but the gate has not released it"
        live_broker.journal.fail(gate, seq, "replicas unreachable")
        assert calls == [False]

        client.publish("", "durable.q", b"ok", properties=PERSISTENT, on_durable=calls.append)
        seq = live_broker.journal.last_seq
        with trio.fail_after(10):
            while gate.written_upto < seq:
                await trio.sleep(0.01)
        live_broker.journal.release(gate, seq)
        assert calls == [False, True]
    finally:
        live_broker.remove_durability_gate(gate)
