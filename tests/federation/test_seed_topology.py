"""The seed's federation, whole: 16 node brokers, 8 sports brokers, 1 novel broker.

Every node pushes ``sports.#`` on ``amq.topic`` to the sports broker it shares with one other
node, and node2 pushes ``novel.#`` to the novel broker, set up as the seed does with
``plugmq route add DEST SRC amq.topic KEY --src-local``. Publishers on every node, consumers
(bound to ``#``: anything that arrives is seen) on the sports and novel brokers: each message
arrives exactly once where the routes say and nowhere else. Then node1 is re-routed to another
sports broker at run time and its publisher, unchanged, reaches the new one.

25 brokers on a small machine: in-memory store (durability is not the point here), brokers
and CLI commands started in parallel, readiness from the brokers' own events.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.federation import bind_queue, collect, depth, manage, plugmq, plugmq_ok, publish

from .conftest import StartBrokers

NODES = [f"node{i}" for i in range(1, 17)]
SPORTS = [f"sports{i}" for i in range(1, 9)]
PER_NODE = 20


def sports_of(node: str) -> str:
    """node1, node2 -> sports1; node3, node4 -> sports2 ..."""
    return f"sports{(int(node[4:]) + 1) // 2}"


@pytest.mark.timeout(300)
def test_seed_topology_and_a_reroute(start_brokers: StartBrokers) -> None:
    started = time.monotonic()
    brokers = start_brokers([*NODES, *SPORTS, "novel"], "--store", "memory")
    print(f"started 25 brokers in {time.monotonic() - started:.1f}s")
    routes = [(sports_of(node), node, "sports.#") for node in NODES] + [
        ("novel", "node2", "novel.#")
    ]
    _run_all(
        ["route", "add", brokers[dest].url, brokers[src].url, "amq.topic", key, "--src-local"]
        for dest, src, key in routes
    )
    print(f"routes added at {time.monotonic() - started:.1f}s")
    for name in [*SPORTS, "novel"]:
        bind_queue(brokers[name], "seen", "amq.topic", "#")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda node: _publish_round(brokers[node], node, "r1"), NODES))

    expected = {name: [] for name in [*SPORTS, "novel"]}
    for node in NODES:
        expected[sports_of(node)] += [
            b"sports.%s.r1.%d" % (node.encode(), i) for i in range(PER_NODE)
        ]
    expected["novel"] += [b"novel.node2.r1.%d" % i for i in range(PER_NODE)]
    _check_arrivals(brokers, expected)
    print(f"first round checked at {time.monotonic() - started:.1f}s")

    # Re-route node1 from sports1 to sports2; node1's publisher does not change.
    plugmq_ok(
        "route",
        "del",
        brokers["sports1"].url,
        brokers["node1"].url,
        "amq.topic",
        "sports.#",
        "--src-local",
    )
    plugmq_ok(
        "route",
        "add",
        brokers["sports2"].url,
        brokers["node1"].url,
        "amq.topic",
        "sports.#",
        "--src-local",
    )
    _publish_round(brokers["node1"], "node1", "r2")
    moved = [b"sports.node1.r2.%d" % i for i in range(PER_NODE)]
    _check_arrivals(brokers, {"sports2": moved, "sports1": [], "novel": []})

    drawn = plugmq_ok("route", "map", brokers["node2"].url)
    assert "node2 (" in drawn and "=> novel (" in drawn and "=> sports1 (" in drawn, drawn


def _run_all(commands) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda args: plugmq(*args), commands))
    failed = [r for r in results if r.returncode != 0]
    assert not failed, [(r.args, r.stdout, r.stderr) for r in failed]


def _publish_round(node, name: str, round_name: str) -> None:
    """Sports and novel messages from one node (every node publishes both)."""
    messages = []
    for i in range(PER_NODE):
        messages.append(
            (f"sports.{name}", b"sports.%s.%s.%d" % (name.encode(), round_name.encode(), i))
        )
        messages.append(
            (f"novel.{name}", b"novel.%s.%s.%d" % (name.encode(), round_name.encode(), i))
        )
    publish(node, "amq.topic", messages)


def _check_arrivals(brokers, expected: dict[str, list[bytes]]) -> None:
    """Each broker got exactly ``expected`` (once each), then nothing more."""
    for name, bodies in expected.items():
        got = collect(brokers[name], "seen", len(bodies))
        counts = Counter(body for _, body, _ in got)
        assert counts == Counter(bodies), name
    # Every push link has drained its queue: anything still to come would be in a backlog.
    for node in NODES:
        links = manage(brokers[node], "link.list")
        assert all(link["backlog"] == 0 and link["state"] == "up" for link in links), links
    for name in expected:
        assert depth(brokers[name], "seen") == 0, name
