"""Dynamic routes: DEST's bindings propagate to SRC, over several hops, without loops.

Four brokers in a ring and in a full mesh of dynamic routes on ``amq.topic``. Each broker has
one consumer queue bound to ``to.<its name>`` and ``broadcast``. Messages published anywhere
to ``to.X`` reach X's queue once and nowhere else; ``broadcast`` reaches every queue once.
Then X unbinds ``to.X``: the propagated bindings go away everywhere, and a later ``to.X``
message stays home (nothing crosses the network that nobody wants).
"""

from __future__ import annotations

import time
from collections import Counter
from itertools import permutations

import pytest
from support.federation import bind_queue, collect_all, connect, depth, manage, publish

from .conftest import StartBrokers

NAMES = ["a", "b", "c", "d"]
PER_KEY = 10


def ring() -> list[tuple[str, str]]:
    """(dest, src): each broker pulls from the one before it."""
    return [(NAMES[(i + 1) % 4], NAMES[i]) for i in range(4)]


def mesh() -> list[tuple[str, str]]:
    """(dest, src): every broker pulls from every other."""
    return list(permutations(NAMES, 2))


def federated_bindings(brokers) -> list[tuple[str, str, str]]:
    """Every binding a dynamic route made (those carrying x-plugmq-bound-from), everywhere."""
    found = []
    for name in NAMES:
        for row in manage(brokers[name], "binding.list"):
            path = (row["arguments"] or {}).get("x-plugmq-bound-from")
            if path:
                found.append((name, row["routing_key"], path))
    return sorted(found)


def settled_bindings(brokers, timeout: float = 20.0) -> list[tuple[str, str, str]]:
    """The propagated bindings once they stop changing (propagation is hop by hop)."""
    deadline = time.monotonic() + timeout
    last = federated_bindings(brokers)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = federated_bindings(brokers)
        if now == last:
            return now
        last = now
    raise AssertionError(f"bindings still changing after {timeout}s: {last}")


@pytest.mark.parametrize("topology", [ring, mesh], ids=["ring", "mesh"])
def test_bindings_propagate_and_messages_follow_them(start_brokers: StartBrokers, topology) -> None:
    brokers = start_brokers(NAMES, "--store", "memory")
    for dest, src in topology():
        result = manage(
            brokers[dest],
            "route.add",
            kind="dynamic",
            remote=[brokers[src].url],
            exchange="amq.topic",
        )
        assert result["state"] == "up", result
    for name in NAMES:
        bind_queue(brokers[name], "inbox", "amq.topic", f"to.{name}", "broadcast")
    bindings = settled_bindings(brokers)
    # No broker holds a binding that came from itself: propagation stopped at the loop.
    assert all(name not in path.split(",") for name, _, path in bindings), bindings

    for sender in NAMES:
        messages = [
            (f"to.{x}", b"%s>%s-%d" % (sender.encode(), x.encode(), i))
            for x in NAMES
            for i in range(PER_KEY)
        ]
        messages += [("broadcast", b"%s>all-%d" % (sender.encode(), i)) for i in range(PER_KEY)]
        publish(brokers[sender], "amq.topic", messages)

    for name in NAMES:
        wanted = {
            b"%s>%s-%d" % (s.encode(), name.encode(), i) for s in NAMES for i in range(PER_KEY)
        }
        wanted |= {b"%s>all-%d" % (s.encode(), i) for s in NAMES for i in range(PER_KEY)}
        got = Counter(collect_all(brokers[name], "inbox", wanted, timeout=30))
        assert got == Counter(wanted), name  # nothing for others, no copy twice

    # d stops wanting to.d: the propagated bindings go, and to.d traffic stays home.
    with connect(brokers["d"]) as connection:
        connection.channel().queue_unbind("inbox", "amq.topic", "to.d")
    remaining = settled_bindings(brokers)
    assert not [b for b in remaining if b[1] == "to.d"], remaining
    publish(brokers["a"], "amq.topic", [("to.d", b"unwanted")])
    publish(brokers["a"], "amq.topic", [("broadcast", b"marker")])
    assert Counter(collect_all(brokers["d"], "inbox", {b"marker"})) == Counter([b"marker"])
    assert depth(brokers["d"], "inbox") == 0
