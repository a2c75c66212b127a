"""Rings and meshes do not loop or multiply messages: the path header and the duplicate window.

Four brokers, pull exchange routes on ``amq.topic`` with key ``#`` (so every message is a
candidate everywhere): a ring (a -> b -> c -> d -> a) and a full mesh (every broker pulls
from every other). Each broker has one consumer queue bound to ``#``; every message published
anywhere must reach every broker's queue exactly once. In the ring a message goes round until
the broker whose id is on its path refuses it; in the mesh a copy reaching a broker over a
second path is dropped by that broker's window.
"""

from __future__ import annotations

from collections import Counter
from itertools import permutations

import pytest
from support.federation import bind_queue, collect, depth, manage, publish

from .conftest import StartBrokers

NAMES = ["a", "b", "c", "d"]
PER_BROKER = 50


def ring() -> list[tuple[str, str]]:
    """(dest, src) pairs of a ring."""
    return [(NAMES[(i + 1) % 4], NAMES[i]) for i in range(4)]


def mesh() -> list[tuple[str, str]]:
    """(dest, src) pairs of a full mesh."""
    return list(permutations(NAMES, 2))


@pytest.mark.parametrize("topology", [ring, mesh], ids=["ring", "mesh"])
def test_every_message_reaches_every_broker_once(start_brokers: StartBrokers, topology) -> None:
    brokers = start_brokers(NAMES, "--store", "memory")
    for name in NAMES:
        bind_queue(brokers[name], "all", "amq.topic", "#")
    for dest, src in topology():
        result = manage(
            brokers[dest], "route.add", remote=[brokers[src].url], exchange="amq.topic", key="#"
        )
        assert result["state"] == "up", result

    for name in NAMES:
        publish(
            brokers[name],
            "amq.topic",
            ((f"t.{name}", b"%s-%d" % (name.encode(), i)) for i in range(PER_BROKER)),
        )

    everything = Counter(b"%s-%d" % (name.encode(), i) for name in NAMES for i in range(PER_BROKER))
    for name in NAMES:
        got = collect(brokers[name], "all", len(everything))
        assert Counter(body for _, body, _ in got) == everything, name
    refused = {name: _refused(brokers[name]) for name in NAMES}
    for name in NAMES:
        assert depth(brokers[name], "all") == 0, (name, refused)
    if topology is ring:
        # Each message goes round once: the last broker before its origin refuses it.
        assert sum(r["loops"] for r in refused.values()) == 4 * PER_BROKER, refused
    else:
        assert sum(r["duplicates"] + r["loops"] for r in refused.values()) > 0, refused


def _refused(broker) -> dict[str, int]:
    links = manage(broker, "link.list")
    return {
        "loops": sum(link["loops"] for link in links),
        "duplicates": sum(link["duplicates"] for link in links),
    }
