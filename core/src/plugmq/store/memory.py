"""The in-memory store: the default when no store plugin is loaded. Keeps nothing on restart.

It still applies records to an in-memory state so that the store contract tests (and
embedders who want to inspect what would have been persisted) can run against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from plugmq.store.records import MessageEnqueued, Record
from plugmq.store.state import StoredState


class MemoryStore:
    """A :class:`plugmq.store.Store` that lives only as long as the broker process."""

    name = "memory"
    durable = False

    def __init__(self) -> None:
        self._state = StoredState()

    def open(self) -> None:
        """Nothing to open."""

    def recover(self, progress: Callable[[int, int], None]) -> Iterator[Record]:
        """Yield the records applied so far in this process (nothing after a restart)."""
        return self._state.records()

    def apply(self, records: Sequence[Record]) -> None:
        """Apply records to the in-memory state."""
        for record in records:
            self._state.apply(record)

    def mark_delivered(self, vhost: str, queue: str, message_ids: Sequence[int]) -> None:
        """Remember deliveries so :meth:`recover` yields them as redelivered."""
        self._state.mark_delivered(vhost, queue, message_ids)

    def read_queue(
        self, vhost: str, queue: str, after_message_id: int, limit: int
    ) -> list[MessageEnqueued]:
        """Paging reads (the broker never pages with a non-durable store, tests do)."""
        return self._state.read_queue(vhost, queue, after_message_id, limit)

    def close(self) -> None:
        """Nothing to close."""
