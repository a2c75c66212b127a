"""kill -9 mid-stream: of the source, of the destination, of the link's owner (seeded rounds).

A publisher sends confirmed persistent messages to SRC's ``amq.topic`` without pause while
one of the two brokers (Berkeley DB store) is killed at a seeded random moment and restarted
on its port. Each case (pull or push route; SRC or DEST killed; the link's owner is DEST for
a pull route, SRC for a push route) runs ``PLUGMQ_FAULT_ROUNDS`` rounds (3 by default: 12
kills in all, each of a short stream, so the file stays within a couple of minutes on 2
cores; set it to 10 or more for a longer soak).

The invariant ledger (design.md, "Fault testing"): every message SRC confirmed arrives at
DEST's queue. Duplicates: DEST drops copies by origin id (pulled ones in the pull link, pushed
ones in its ingress exchange) while it lives, so with DEST alive (SRC killed) consumers see
none, pull or push. A pull link's keys are journaled with the messages (the durable window,
``plugmq_federation.durable_window``) and SRC's ack waits for them, so a copy SRC sends again
after DEST was killed is dropped by the restarted DEST too: none, pull. The ingress exchange's
window (push) is in memory: a copy stored by DEST in the instant before it was killed (its
confirm to SRC lost) comes again after the restart and is taken again: at most one ack window
(``--ack``) per DEST kill, counted and bounded here (docs/plugins/federation.md, "Guarantees
and their limits").
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter

import pika
import pika.exceptions
import pytest
from support.broker_process import BrokerProcess
from support.federation import bind_queue, collect_all, connect, free_port, plugmq_ok

from .conftest import StartBrokers

SEED = int(os.environ.get("PLUGMQ_TEST_SEED", "20261205"))
ROUNDS = int(os.environ.get("PLUGMQ_FAULT_ROUNDS", "3"))
ACK = 20


class Publisher(threading.Thread):
    """Publishes confirmed persistent messages until stopped or its broker dies."""

    def __init__(self, broker: BrokerProcess, tag: str, confirmed: set[bytes]) -> None:
        super().__init__(daemon=True)
        self.broker, self.tag, self.confirmed = broker, tag, confirmed
        self.stop = threading.Event()
        self.started_publishing = threading.Event()

    def run(self) -> None:
        """Publish ``tag-N`` bodies; a confirmed one goes to the ledger."""
        try:
            with connect(self.broker) as connection:
                channel = connection.channel()
                channel.confirm_delivery()
                number = 0
                while not self.stop.is_set():
                    body = b"%s-%d" % (self.tag.encode(), number)
                    number += 1
                    channel.basic_publish(
                        "amq.topic", "f.x", body, pika.BasicProperties(delivery_mode=2)
                    )
                    self.confirmed.add(body)
                    self.started_publishing.set()
        except pika.exceptions.AMQPError:
            self.started_publishing.set()  # SRC died under it: this message's fate is unknown


@pytest.mark.timeout(300)
@pytest.mark.parametrize("victim", ["src", "dest"])
@pytest.mark.parametrize("push", [False, True], ids=["pull", "push"])
def test_kill9_mid_stream_loses_nothing(
    start_brokers: StartBrokers, push: bool, victim: str
) -> None:
    rng = random.Random(f"{SEED}-{push}-{victim}")
    # Fixed ports: a restarted broker must be where the route's URL says.
    src = start_brokers(["src"], "--port", str(free_port()), "--bdb-sync", "commit")["src"]
    dest = start_brokers(["dest"], "--port", str(free_port()), "--bdb-sync", "commit")["dest"]
    bind_queue(dest, "sink", "amq.topic", "f.#")
    args = ["--src-local"] if push else []
    plugmq_ok(
        "route", "add", dest.url, src.url, "amq.topic", "f.#", "--durable", "--ack", str(ACK), *args
    )
    owner = src if push else dest
    killed = src if victim == "src" else dest
    confirmed: set[bytes] = set()
    for round_number in range(ROUNDS):
        publisher = Publisher(src, f"r{round_number}", confirmed)
        publisher.start()
        publisher.started_publishing.wait(30)
        threading.Event().wait(rng.uniform(0.1, 0.8))  # let it stream: a seeded moment
        killed.kill()
        publisher.stop.set()
        publisher.join(30)
        killed.restart()
        owner.wait_event("federation_link_up", timeout=60)

    counts = Counter(collect_all(dest, "sink", confirmed, timeout=90))
    copies = sum(n - 1 for n in counts.values())
    print(f"{'push' if push else 'pull'} kill {victim}: confirmed={len(confirmed)} copies={copies}")
    if victim == "src" or not push:  # DEST's window lived on (in memory, or journaled)
        assert copies == 0, {body: n for body, n in counts.items() if n > 1}
    else:  # the ingress window died with DEST: one ack window per kill may come back
        assert copies <= ACK * ROUNDS, copies
