"""``--network dynamic``: masters found by discovery keep routes to every other group.

Real brokers on loopback, multicast discovery on the test's own port (tests/discovery tells how
that works without privileges), pika publishers and consumers; assertions on what arrives.
"""

from __future__ import annotations

import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
from support.broker_process import broker_process
from support.federation import (
    bind_queue,
    collect,
    collect_all,
    connect,
    depth,
    manage,
    plugmq_json,
    plugmq_ok,
    publish,
)
from support.multicast import LOOPBACK, free_udp_port
from support.polling import wait_until
from support.sharedfs import SharedFSGroup

from .test_faults import Publisher

INTERVAL = "0.3"


@pytest.fixture
def network(tmp_path: Path) -> tuple[str, ...]:
    """The flags of one network (its own multicast port)."""
    return ("--discovery", "multicast", "--discovery-multicast",
            f"239.255.77.77:{free_udp_port()}", "--discovery-interface", LOOPBACK,
            "--discovery-interval", INTERVAL, "--network", "dynamic",
            "--network-queue", "work")  # fmt: skip


def network_links(broker) -> dict[tuple[str, str], dict]:
    """``(group, exchange or queue)`` → the link of each network route of ``broker``."""
    routes = {r["id"]: r for r in manage(broker, "route.list")["routes"] if r["group"]}
    return {
        (routes[link["route"]]["group"], link["key"] or link["exchange"]): link
        for link in manage(broker, "link.list")
        if link["route"] in routes
    }


def links_up(broker, wanted: set[tuple[str, str]]) -> bool:
    links = network_links(broker)
    return set(links) == wanted and all(link["state"] in ("up", "idle") for link in links.values())


def bound_on(broker, queue_prefix: str, key: str) -> bool:
    """Whether a network queue named ``queue_prefix...`` is bound with ``key`` on ``broker``."""
    return any(
        b["destination"].startswith(queue_prefix) and b["routing_key"] == key
        for b in manage(broker, "binding.list")
    )


def test_three_groups_link_every_way_and_a_vanished_group_is_dropped(start_brokers, network):
    brokers = start_brokers(["A", "B", "C"], *network)
    a, b, c = brokers["A"], brokers["B"], brokers["C"]
    for name, broker in brokers.items():
        others = {g for g in brokers if g != name}
        wanted = {(g, "amq.topic") for g in others} | {(g, "work") for g in others}
        wait_until(partial(links_up, broker, wanted), what=f"{name}'s network links")

    # Dynamic routes: a binding on B pulls matching messages from A and C, nothing else.
    bind_queue(b, "b-sports", "amq.topic", "sports.#")
    for source in (a, c):
        wait_until(partial(bound_on, source, "federation.network.", "sports.#"), what="B's demand")
    publish(a, "amq.topic", [("sports.a", f"a{i}".encode()) for i in range(20)])
    publish(c, "amq.topic", [("sports.c", f"c{i}".encode()) for i in range(20)])
    publish(a, "amq.topic", [("news.a", b"not for B")])
    wanted = {f"a{i}".encode() for i in range(20)} | {f"c{i}".encode() for i in range(20)}
    got = collect_all(b, "b-sports", wanted)
    assert sorted(got) == sorted(wanted), "each message exactly once"

    # A key bound in two groups: each gets A's messages once, straight from A, and nothing is
    # sent on from B to C or back (the local-only exchange keeps forwarded messages home).
    bind_queue(b, "b-news", "amq.topic", "news.#")
    bind_queue(c, "c-news", "amq.topic", "news.#")
    for source in (a, c):
        wait_until(partial(bound_on, source, "federation.network.", "news.#"), what="B's news")
    for source in (a, b):
        wait_until(partial(bound_on, source, "federation.network.", "news.#"), what="C's news")
    news = {f"n{i}".encode() for i in range(30)}
    publish(a, "amq.topic", [("news.x", body) for body in sorted(news)])
    assert sorted(collect_all(b, "b-news", news)) == sorted(news)
    assert sorted(collect_all(c, "c-news", news)) == sorted(news)
    for broker in (b, c):
        assert all(link["hop_limited"] == 0 for link in network_links(broker).values())

    # Demand queue: messages wait on A until C has a consumer of 'work'.
    publish(a, "", [("work", f"w{i}".encode()) for i in range(10)])
    time.sleep(1.0)  # give a wrong forward the time to happen: nothing may move
    assert depth(a, "work") == 10 and depth(c, "work") == 0
    with connect(c) as connection:
        channel = connection.channel()
        bodies: list[bytes] = []
        channel.basic_consume(
            "work", lambda ch, method, props, body: bodies.append(body), auto_ack=True
        )
        deadline = time.monotonic() + 30
        while len(bodies) < 10 and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
    assert sorted(bodies) == sorted(f"w{i}".encode() for i in range(10))

    # route map and stat ha against any master show every group and the links between them.
    graph = plugmq_json("route", "map", a.url)
    assert {g["group"] for g in graph["groups"]} == {"A", "B", "C"}
    pairs = {(e["source"], e["destination"]) for e in graph["routes"] if e["kind"] == "dynamic"}
    assert pairs == {(s, d) for s in "ABC" for d in "ABC" if s != d}
    drawn = plugmq_ok("route", "map", b.url)
    assert "Groups: 3" in drawn and f"A: master amqp://127.0.0.1:{a.port}/ (epoch 1" in drawn
    assert "dynamic" in drawn and "demand queue work" in drawn
    rows = {row["group"]: row for row in plugmq_json("stat", "ha", "--broker", c.url)}
    assert set(rows) == {"A", "B", "C"} and rows["C"]["role"] == "master"
    assert rows["A"]["listening"] == [f"amqp://127.0.0.1:{a.port}/"]

    c.kill()
    a.wait_event("federation_network_route_stopped", group="C", timeout=20)
    wait_until(lambda: links_up(a, {("B", "amq.topic"), ("B", "work")}), what="A without C")


def test_links_follow_a_groups_master_across_failover(tmp_path: Path, start_brokers, network):
    group = SharedFSGroup(tmp_path / "g1", size=2, lease=1.0, group="g1", extra=network)
    (tmp_path / "g1").mkdir()
    try:
        first = group.start()
        b = start_brokers(["B"], *network)["B"]
        wait_until(lambda: links_up(b, {("g1", "amq.topic"), ("g1", "work")}), what="B -> g1")
        bind_queue(b, "b-all", "amq.topic", "k")
        wait_until(lambda: bound_on(first, "federation.network.", "k"), what="B's binding on g1")
        publish(first, "amq.topic", [("k", b"before")])
        assert [m[1] for m in collect(b, "b-all", 1)] == [b"before"]

        first.kill()
        second = group.brokers[1]
        second.wait_event("broker_active", timeout=30)
        b.wait_event("federation_network_route_retargeted", timeout=30)
        # The binding came with the store (durable queue, bound by B's link): no re-sync needed.
        assert bound_on(second, "federation.network.", "k")
        publish(second, "amq.topic", [("k", b"after")])
        assert [m[1] for m in collect(b, "b-all", 1, timeout=30)] == [b"after"]
        time.sleep(0.5)
        assert depth(b, "b-all") == 0, "no duplicate of 'before'"
    finally:
        group.stop()


def test_a_destination_groups_failover_delivers_each_message_once(
    tmp_path: Path, start_brokers, network
):
    """kill -9 of the master of the group that pulls, mid-stream: its successor has the
    journaled window (the shared store), so what SRC sends again is not taken twice."""
    (tmp_path / "g1").mkdir()
    group = SharedFSGroup(tmp_path / "g1", size=2, lease=1.0, group="g1", extra=network)
    try:
        first = group.start()
        src = start_brokers(["S"], *network, "--bdb-sync", "commit")["S"]
        bind_queue(first, "sink", "amq.topic", "f.#")
        wait_until(partial(bound_on, src, "federation.network.", "f.#"), what="g1's binding on S")
        confirmed: set[bytes] = set()
        publisher = Publisher(src, "m", confirmed)
        publisher.start()
        publisher.started_publishing.wait(30)
        wait_until(lambda: len(confirmed) > 300, what="a stream under way")
        first.kill()
        second = group.brokers[1]
        second.wait_event("broker_active", timeout=30)
        wait_until(lambda: len(confirmed) > 600, what="the stream goes on")
        publisher.stop.set()
        publisher.join(30)
        got = collect_all(second, "sink", confirmed, timeout=90)
        copies = {body: n for body, n in Counter(got).items() if n > 1}
        assert not copies, f"{len(copies)} delivered twice of {len(confirmed)}"
        assert set(got) >= confirmed
    finally:
        group.stop()


def test_a_network_exchange_declared_later_gets_its_routes(start_brokers, network):
    brokers = start_brokers(["A", "B"], *network, "--network-exchange", "orders")
    a, b = brokers["A"], brokers["B"]
    event = a.wait_event("federation_network_route_not_started", group="B", timeout=30)
    assert "orders" in event["error"]  # no such exchange here yet: said, and tried again
    for broker in (a, b):
        with connect(broker) as connection:
            connection.channel().exchange_declare("orders", "topic", durable=True)
    for broker, other in ((a, "B"), (b, "A")):
        wait_until(partial(links_up, broker, {(other, "orders"), (other, "work")}), what="orders")
    bind_queue(b, "b-orders", "orders", "eu.#")
    wait_until(partial(bound_on, a, "federation.network.", "eu.#"), what="B's binding on A")
    publish(a, "orders", [("eu.fr", b"o1")])
    assert [m[1] for m in collect(b, "b-orders", 1)] == [b"o1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--network", "static"), "--network must be 'dynamic'"),
        (("--network", "dynamic", "--network-queue", ""), "is not a name"),
    ],
)
def test_bad_network_flags_stop_the_broker_with_their_reason(tmp_path: Path, args, message):
    broker = broker_process(tmp_path, *args)
    with pytest.raises(RuntimeError, match="broker exited") as failure:
        broker.start(timeout=30)
    assert message in str(failure.value)
