"""Demand-driven queues: who consumes which queue here, from the consumer events.

A demand route (ActiveMQ's network bridge, RabbitMQ's federated queue) moves messages of a
queue on SRC into the queue of the same name here only while this queue has consumers of its
own. Federation links' own consumers (tag prefix :data:`LINK_TAG`) are not demand: counting
them, two brokers federating one queue both ways would pull each other's messages forever.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

STASH_KEY = "federation.consumers"
#: Consumer tags of federation links (on the remote broker they consume from).
LINK_TAG = "plugmq.federation."


class ConsumerCounts:
    """Consumers per (vhost, queue), without federation links; listeners hear of changes."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._listeners: dict[tuple[str, str], set[Callable[[], None]]] = {}

    def changed(self, vhost: str, queue: str, tag: str, delta: int) -> None:
        """A consumer came (+1) or went (-1); called by the hooks."""
        if tag.startswith(LINK_TAG):
            return
        where = (vhost, queue)
        self._counts[where] += delta
        if self._counts[where] <= 0:
            del self._counts[where]
        for callback in list(self._listeners.get(where, ())):
            callback()

    def count(self, vhost: str, queue: str) -> int:
        """Consumers of ``queue`` now (federation links not counted)."""
        return self._counts.get((vhost, queue), 0)

    def listen(self, vhost: str, queue: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each change of ``queue``'s consumers."""
        self._listeners.setdefault((vhost, queue), set()).add(callback)

    def unlisten(self, vhost: str, queue: str, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        self._listeners.get((vhost, queue), set()).discard(callback)


def consumers_of(broker: Any) -> ConsumerCounts:
    """The broker's consumer counts (made on first use)."""
    counts = broker.stash.get(STASH_KEY)
    if counts is None:
        counts = broker.stash[STASH_KEY] = ConsumerCounts()
    return counts
