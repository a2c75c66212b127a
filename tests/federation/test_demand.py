"""Demand-driven queues, ActiveMQ's network-bridge scenario.

Queue ``orders`` exists on A and on B, with demand routes both ways (each broker moves the
other's ``orders`` into its own while it has consumers). A producer on A and no consumer
anywhere: the messages stay on A. A consumer appears on B: they flow to B, each once. The
consumer leaves: new messages stay on A again.
"""

from __future__ import annotations

import time

from support.federation import connect, depth, manage, plugmq_ok, publish

from .conftest import StartBrokers


def _states(broker) -> list[str]:
    return [link["state"] for link in manage(broker, "link.list")]


def _stays(broker, queue: str, count: int, seconds: float = 1.5) -> None:
    """``queue`` keeps exactly ``count`` messages for ``seconds`` (nothing moves it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert depth(broker, queue) == count
        time.sleep(0.1)


def test_messages_move_only_where_there_is_a_consumer(start_brokers: StartBrokers) -> None:
    brokers = start_brokers(["a", "b"], "--store", "memory")
    a, b = brokers["a"], brokers["b"]
    for broker in (a, b):
        with connect(broker) as connection:
            connection.channel().queue_declare("orders", durable=True)
    plugmq_ok("route", "demand", "add", b.url, a.url, "orders", "--ack", "10")
    plugmq_ok("route", "demand", "add", a.url, b.url, "orders", "--ack", "10")
    assert _states(a) == _states(b) == ["idle"]

    publish(a, "", (("orders", b"o%d" % i) for i in range(100)))
    _stays(a, "orders", 100)
    assert depth(b, "orders") == 0

    got: list[bytes] = []
    with connect(b) as connection:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=5)
        for method, _, body in channel.consume("orders", inactivity_timeout=20):
            assert method is not None, f"only {len(got)} of 100 reached B"
            got.append(body)
            channel.basic_ack(method.delivery_tag)
            if len(got) == 100:
                break
        channel.cancel()
    assert sorted(got) == sorted(b"o%d" % i for i in range(100))
    assert depth(a, "orders") == 0

    deadline = time.monotonic() + 10
    while _states(b) != ["idle"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _states(b) == ["idle"]
    publish(a, "", (("orders", b"late%d" % i) for i in range(20)))
    _stays(a, "orders", 20)
    assert depth(b, "orders") == 0
