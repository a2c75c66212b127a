"""The in-broker client's identity, permissions, declares, flow control and close."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from pamqp import commands
from support.in_process import running_broker

from plugmq.amqp.errors import (
    AccessRefused,
    ConnectionAccessRefused,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
from plugmq.broker.broker import Broker
from plugmq.inbroker import (
    ClientClosed,
    Delivery,
    Unroutable,
    open_client,
    open_internal_client,
)


def _user(broker: Broker, name: str, configure: str, write: str, read: str, vhost: str = "/"):
    broker.access.add_user(name, "secret")
    broker.access.set_permissions(name, vhost, configure, write, read)


# -- identity and permissions ---------------------------------------------------------------------


async def test_a_user_without_access_to_the_vhost_is_refused(live_broker: Broker) -> None:
    live_broker.access.add_user("nobody", "secret")
    with pytest.raises(ConnectionAccessRefused) as refused:
        open_client(live_broker, "/", "nobody")
    assert refused.value.reply_code == 403
    with pytest.raises(ConnectionAccessRefused, match="no such vhost"):
        open_client(live_broker, "/missing", "guest")


async def test_a_user_without_write_permission_cannot_publish(live_broker: Broker) -> None:
    _user(live_broker, "reader", ".*", "^$", ".*")
    client = open_client(live_broker, "/", "reader")
    client.declare_queue("r.q")
    with pytest.raises(AccessRefused) as refused:
        client.publish("", "r.q", b"x")
    assert refused.value.reply_code == 403
    assert "access to exchange 'amq.default' in vhost '/' refused for user 'reader'" in str(
        refused.value
    )
    with pytest.raises(AccessRefused):
        client.bind_queue("r.q", "amq.direct", "k")  # bind needs write on the queue
    assert client.declare_queue("r.q", passive=True).message_count == 0


async def test_configure_and_read_permissions_apply(live_broker: Broker) -> None:
    _user(live_broker, "limited", "^mine\\.", ".*", "^mine\\.")
    client = open_client(live_broker, "/", "limited")
    client.declare_queue("mine.q")
    with pytest.raises(AccessRefused):
        client.declare_queue("theirs.q")
    with pytest.raises(AccessRefused):
        client.declare_exchange("theirs.x", "fanout")
    open_internal_client(live_broker).declare_queue("theirs.q")
    with pytest.raises(AccessRefused):
        client.consume("theirs.q", lambda delivery: None)
    client.consume("mine.q", lambda delivery: None)


async def test_a_permission_change_applies_at_once(live_broker: Broker) -> None:
    _user(live_broker, "fickle", ".*", ".*", ".*")
    client = open_client(live_broker, "/", "fickle")
    client.declare_queue("f.q")
    assert client.publish("", "f.q", b"1") == 1
    live_broker.access.set_permissions("fickle", "/", ".*", "^$", ".*")
    with pytest.raises(AccessRefused):
        client.publish("", "f.q", b"2")


async def test_user_id_must_name_the_user_unless_impersonating(live_broker: Broker) -> None:
    client = open_client(live_broker)
    client.declare_queue("u.q")
    with pytest.raises(PreconditionFailed, match="user_id property set to 'mallory'"):
        client.publish("", "u.q", b"x", properties={"user_id": "mallory"})
    assert client.publish("", "u.q", b"x", properties={"user_id": "guest"}) == 1
    internal = open_internal_client(live_broker)
    assert internal.publish("", "u.q", b"x", properties={"user_id": "mallory"}) == 1
    _user(live_broker, "shovel", ".*", ".*", ".*")
    live_broker.access.set_tags("shovel", {"impersonator"})
    shovel = open_client(live_broker, "/", "shovel")
    assert shovel.publish("", "u.q", b"x", properties={"user_id": "mallory"}) == 1


# -- declares -------------------------------------------------------------------------------------


async def test_declares_follow_rabbitmq_rules(live_broker: Broker) -> None:
    client = open_client(live_broker)
    status = client.declare_queue("d.q", durable=True)
    assert (status.name, status.durable, status.message_count) == ("d.q", True, 0)
    with pytest.raises(PreconditionFailed, match="inequivalent arg 'durable'"):
        client.declare_queue("d.q", durable=False)
    with pytest.raises(NotFound):
        client.declare_queue("absent", passive=True)
    with pytest.raises(AccessRefused, match="reserved prefix"):
        client.declare_queue("amq.mine")
    assert client.declare_queue().name.startswith("amq.gen-")
    client.declare_exchange("d.x", "topic", durable=True)
    client.declare_exchange("d.y", "fanout", durable=True)
    client.bind_exchange("d.y", "d.x", "a.#")
    client.bind_queue("d.q", "d.y")
    assert client.publish("d.x", "a.b", b"via two exchanges") == 1
    client.unbind_exchange("d.y", "d.x", "a.#")
    assert client.publish("d.x", "a.b", b"nowhere now") == 0
    client.unbind_queue("d.q", "d.y")
    with pytest.raises(Unroutable) as unroutable:
        client.publish("d.x", "a.b", b"x", mandatory=True)
    assert unroutable.value.reply_code == 312
    client.delete_exchange("d.y")
    with pytest.raises(NotFound):
        client.publish("d.y", "", b"x")
    with pytest.raises(PreconditionFailed, match="not empty"):
        client.delete_queue("d.q", if_empty=True)
    assert client.delete_queue("d.q") == 1
    assert client.delete_queue("d.q") == 0


async def test_durable_declares_survive_a_restart_after_flush(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        client = open_client(broker)
        client.declare_exchange("keep.x", "direct", durable=True)
        client.declare_queue("keep.q", durable=True)
        client.bind_queue("keep.q", "keep.x", "k")
        client.publish("keep.x", "k", b"kept", properties={"delivery_mode": 2})
        await client.flush()
    async with running_broker(tmp_path) as broker:
        client = open_client(broker)
        assert client.declare_queue("keep.q", passive=True).message_count == 1
        assert client.publish("keep.x", "k", b"routed again") == 1


async def test_properties_and_raw_headers(live_broker: Broker) -> None:
    client = open_client(live_broker)
    client.declare_queue("p.q")
    got: list[Delivery] = []
    client.consume("p.q", got.append)
    pamqp_properties = commands.Basic.Properties(content_type="text/plain", headers={"a": 1})
    client.publish("", "p.q", b"one", properties=pamqp_properties)
    client.publish("", "p.q", b"two", properties={"correlation_id": "c-2", "priority": 3})
    client.publish("", "p.q", b"two", header=got[1].header)
    assert got[0].properties.content_type == "text/plain"
    assert got[0].properties.headers == {"a": 1}
    assert got[1].properties.correlation_id == "c-2"
    assert got[2].header is got[1].header, "a raw header is passed through untouched"
    with pytest.raises(PreconditionFailed, match="announces 3 body bytes"):
        client.publish("", "p.q", b"four", header=got[1].header)
    with pytest.raises(ValueError, match="not both"):
        client.publish("", "p.q", b"two", header=got[1].header, properties={})


async def test_a_resend_published_as_redelivered_is_delivered_so(tmp_path: Path) -> None:
    """A message the publisher cannot prove new (a federation link's resend) reaches consumers
    with ``redelivered`` set, on a queue with a TTL too, and after a restart (stored flag)."""
    async with running_broker(tmp_path) as broker:
        client = open_client(broker)
        client.declare_queue("resend.q", durable=True)
        client.declare_queue("resend.ttl", durable=True, arguments={"x-message-ttl": 60000})
        persistent = {"delivery_mode": 2}
        client.publish("", "resend.q", b"new", properties=persistent)
        client.publish("", "resend.q", b"resent", properties=persistent, redelivered=True)
        client.publish("", "resend.ttl", b"resent", properties=persistent, redelivered=True)
        got: list[Delivery] = []
        client.consume("resend.ttl", got.append)
        assert [(d.body, d.redelivered) for d in got] == [(b"resent", True)]
        await client.flush()
    async with running_broker(tmp_path) as broker:
        client = open_client(broker)
        got = []
        client.consume("resend.q", got.append)
        # After a clean stop "new" was never delivered: only the resend carries the flag.
        assert [(d.body, d.redelivered) for d in got] == [(b"new", False), (b"resent", True)]


# -- flow control ---------------------------------------------------------------------------------


async def test_the_memory_alarm_blocks_until_messages_are_consumed(tmp_path: Path) -> None:
    async with running_broker(tmp_path, memory_high_watermark=5000) as broker:
        client = open_client(broker)
        client.declare_queue("big")
        assert not client.blocked
        client.publish("", "big", bytes(6000))
        assert client.blocked and broker.memory.alarm
        unblocked = trio.Event()

        async def waiter() -> None:
            await client.wait_unblocked()
            unblocked.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(0.05)
            assert not unblocked.is_set(), "still blocked while the message is held"
            client.consume("big", lambda delivery: delivery.ack())
            with trio.fail_after(5):
                await unblocked.wait()
        assert not client.blocked


# -- closing --------------------------------------------------------------------------------------


async def test_close_requeues_unacked_and_deletes_exclusive_queues(live_broker: Broker) -> None:
    owner = open_client(live_broker)
    other = open_client(live_broker)
    owner.declare_queue("shared.q")
    owner.declare_queue("private.q", exclusive=True)
    assert owner.owns("private.q") and not other.owns("private.q")
    with pytest.raises(ResourceLocked):
        other.consume("private.q", lambda delivery: None)
    got: list[Delivery] = []
    owner.consume("shared.q", got.append)
    for number in range(3):
        owner.publish("", "shared.q", b"%d" % number)
    got[0].ack()
    owner.close()
    with pytest.raises(ClientClosed):
        owner.publish("", "shared.q", b"x")
    with pytest.raises(PreconditionFailed):
        got[1].ack()  # requeued by close
    with pytest.raises(NotFound):
        other.declare_queue("private.q", passive=True)
    again: list[Delivery] = []
    other.consume("shared.q", again.append)
    assert [(d.body, d.redelivered) for d in again] == [(b"1", True), (b"2", True)]


async def test_a_client_of_a_deleted_vhost_is_closed(live_broker: Broker) -> None:
    live_broker.declare_vhost("/gone")
    client = open_internal_client(live_broker, "/gone")
    client.declare_queue("q")
    await live_broker.delete_vhost("/gone")
    with pytest.raises(ClientClosed, match="deleted"):
        client.publish("", "q", b"x")
