"""Priority queues (``x-max-priority``): one FIFO per priority level.

RabbitMQ's rule (https://www.rabbitmq.com/priority.html): a message's ``priority`` property is
capped at the queue's maximum; higher priorities are delivered first, FIFO within a priority;
a message without a priority counts as 0. :class:`PriorityMessages` offers the subset of
``deque`` that :class:`plugmq.broker.queue.Queue` uses, so the queue code is the same for both;
only a queue declared with ``x-max-priority`` pays for the buckets.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plugmq.broker.queue import Entry


class PriorityMessages:
    """Ready entries in delivery order: highest priority first, then oldest first."""

    __slots__ = ("_buckets", "_length", "_max")

    def __init__(self, max_priority: int) -> None:
        self._max = max_priority
        self._buckets: list[deque[Entry]] = [deque() for _ in range(max_priority + 1)]
        self._length = 0

    def _bucket(self, entry: Entry) -> deque[Entry]:
        return self._buckets[min(entry.message.priority, self._max)]

    def append(self, entry: Entry) -> None:
        """Add ``entry`` behind the entries of its priority."""
        self._bucket(entry).append(entry)
        self._length += 1

    def popleft(self) -> Entry:
        """Remove and return the next entry to deliver (IndexError when empty)."""
        for bucket in reversed(self._buckets):
            if bucket:
                self._length -= 1
                return bucket.popleft()
        raise IndexError("pop from an empty priority queue")

    def __getitem__(self, index: int) -> Entry:
        """``[0]`` is the next entry to deliver; other indexes are not supported."""
        if index != 0:
            raise IndexError("only the head of a priority queue can be read")
        for bucket in reversed(self._buckets):
            if bucket:
                return bucket[0]
        raise IndexError("priority queue is empty")

    def requeue(self, entries: Iterable[Entry]) -> None:
        """Put entries back in their original order (by ``seq``) within their priorities."""
        returning: dict[int, list[Entry]] = {}
        for entry in entries:
            returning.setdefault(min(entry.message.priority, self._max), []).append(entry)
            self._length += 1
        for level, back in returning.items():
            bucket = self._buckets[level]
            self._buckets[level] = deque(heapq.merge(sorted(back), bucket))

    def clear(self) -> None:
        """Drop every entry."""
        for bucket in self._buckets:
            bucket.clear()
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:
        return self._length > 0

    def __iter__(self) -> Iterator[Entry]:
        return chain.from_iterable(reversed(self._buckets))
