"""Queue routes: SRC's queue drains into an exchange on DEST; two DESTs share its messages.

``plugmq route queue add DEST SRC amq.direct work`` on two destinations: both consume the
same queue on SRC (competing consumers), so each message reaches exactly one of them, and
both take part (load balancing).
"""

from __future__ import annotations

import time
from collections import Counter

from support.federation import bind_queue, collect_all, depth, manage, plugmq_ok, publish

from .conftest import StartBrokers

COUNT = 400


def test_two_destinations_share_a_queue(start_brokers: StartBrokers) -> None:
    brokers = start_brokers(["src", "d1", "d2"], "--store", "memory")
    src = brokers["src"]
    bind_queue(src, "work", "amq.direct", "job")
    for name in ("d1", "d2"):
        bind_queue(brokers[name], "jobs", "amq.direct", "job")
        plugmq_ok(
            "route", "queue", "add", brokers[name].url, src.url, "amq.direct", "work", "--ack", "10"
        )

    sent = {b"j%d" % i for i in range(COUNT)}
    publish(src, "amq.direct", (("job", body) for body in sorted(sent)))

    got: Counter[bytes] = Counter()
    deadline = time.monotonic() + 30
    while sum(got.values()) < COUNT and time.monotonic() < deadline:
        for name in ("d1", "d2"):
            got.update(collect_all(brokers[name], "jobs", set()))  # what is there now
    assert got == Counter(sent), "each message exactly once, at one destination"
    per_destination = {
        name: sum(link["forwarded"] for link in manage(brokers[name], "link.list"))
        for name in ("d1", "d2")
    }
    assert sum(per_destination.values()) == COUNT and all(per_destination.values()), per_destination
    assert depth(src, "work") == 0
    plugmq_ok("route", "queue", "del", brokers["d1"].url, src.url, "amq.direct", "work")
    assert depth(src, "work") == 0  # the source queue is the user's: it stays
