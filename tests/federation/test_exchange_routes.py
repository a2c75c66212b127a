"""Exchange routes between two real brokers: pull (DEST runs the link) and push (--src-local).

Confirmed persistent messages on SRC's ``amq.topic`` arrive once each at DEST's, carrying the
path header; messages the key does not match stay home; the route's link reports what it
forwarded. Deleting the route removes the queue it made on the other broker.
"""

from __future__ import annotations

import pytest
from support.federation import (
    bind_queue,
    collect,
    depth,
    manage,
    plugmq_json,
    plugmq_ok,
    publish,
)
from support.polling import wait_for

from .conftest import StartBrokers

COUNT = 300


@pytest.mark.parametrize("push", [False, True], ids=["pull", "push"])
def test_exchange_route_forwards_matching_messages_once(
    start_brokers: StartBrokers, push: bool
) -> None:
    brokers = start_brokers(["src", "dest"])
    src, dest = brokers["src"], brokers["dest"]
    push_flag = ["--src-local"] if push else []
    out = plugmq_ok("route", "add", dest.url, src.url, "amq.topic", "orders.#", *push_flag)
    assert "link up to" in out
    bind_queue(dest, "orders", "amq.topic", "#")
    bind_queue(src, "local", "amq.topic", "#")

    sent = publish(src, "amq.topic", ((f"orders.{i % 3}", b"o%d" % i) for i in range(COUNT)))
    publish(src, "amq.topic", ((f"other.{i}", b"x%d" % i) for i in range(20)))

    got = collect(dest, "orders", sent)
    assert sorted(body for _, body, _ in got) == sorted(b"o%d" % i for i in range(COUNT))
    paths = {headers["x-plugmq-path"].partition(";")[0] for _, _, headers in got}
    assert paths == {"src,dest"}  # then the content stamp of a message without message_id
    assert all(key.startswith("orders.") for key, _, _ in got)
    assert len(collect(src, "local", COUNT + 20)) == COUNT + 20  # SRC's own consumers too
    owner = src if push else dest
    # The backlog (SRC's queue for pull, the local one for push) drains to 0.
    wait_for(lambda: manage(owner, "link.list")[0]["backlog"] == 0, timeout=10)
    links = plugmq_json("link", "list", owner.url)
    assert [(link["state"], link["forwarded"], link["peer"]) for link in links] == [
        ("up", COUNT, "dest" if push else "src")
    ]
    assert depth(dest, "orders") == 0  # nothing more came (the other.* messages stayed)

    plugmq_ok("route", "del", dest.url, src.url, "amq.topic", "orders.#", *push_flag)
    assert plugmq_json("route", "list", owner.url)["routes"] == []
    publish(src, "amq.topic", [("orders.late", b"late")])
    remaining = plugmq_json("config", "list", "queues", "--broker", src.url)
    assert not [q for q in remaining if q["name"].startswith("federation.")], remaining


def test_static_route_from_a_flag(start_brokers: StartBrokers) -> None:
    src = start_brokers(["src"], "--store", "memory")["src"]
    route = f"pull {src.url} amq.topic static.#"
    dest = start_brokers(["dest"], "--store", "memory", "--federation-route", route)["dest"]
    dest.wait_event("federation_link_up")
    bind_queue(dest, "static", "amq.topic", "#")
    publish(src, "amq.topic", [("static.a", b"s1"), ("other", b"no")])
    assert [body for _, body, _ in collect(dest, "static", 1)] == [b"s1"]
    routes = plugmq_json("route", "list", dest.url)["routes"]
    assert [(r["direction"], r["key"], r["peer"]) for r in routes] == [("pull", "static.#", "src")]
