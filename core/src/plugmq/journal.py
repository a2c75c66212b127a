"""The journal: the one ordered path of every durable change to the store.

Callers append records (declares, bindings, persistent enqueues and their removal) and get a
sequence number back. A single writer task takes everything appended since its last write and
hands it to the store as one batch in a worker thread (group commit: many publishers share one
fsync). When the batch is durable, callbacks registered with :meth:`Journal.when_durable` run
in order on the trio loop; publisher confirms and tx.commit-ok are sent from there.

When the store is not durable (the in-memory default), nothing is written and every sequence
number is durable at once, so the memory-only broker pays nothing for the journal.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import structlog
import trio

from plugmq.store.base import Store
from plugmq.store.records import MessageEnqueued, MessageRemoved, Record

log = structlog.get_logger("plugmq.journal")

#: Upper bound of records per store transaction; keeps one commit's latency bounded.
MAX_BATCH = 5000
#: While consumers acknowledge persistent messages before they are written, every record waits
#: at least this long before the writer takes it, so that more enqueue/removal pairs cancel
#: out and are never written (RabbitMQ's message store likewise syncs on an interval).
#: Publishes nobody consumes are then confirmed that much later; without cancellations the
#: writer takes records at once.
GATHER_SECONDS = 0.010


class Journal:
    """Batches records for the store and reports when they are durable."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.enabled = store.durable
        #: Records waiting for the writer; None marks an enqueue cancelled by its removal.
        self._pending: list[Record | None] = []
        self._unwritten_enqueues: dict[tuple[str, str, int], int] = {}
        self.annihilated = 0
        self._appended = 0
        self.durable_seq = 0
        self._callbacks: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = trio.Event()
        #: The store is called from one thread at a time: batches and paging reads take turns.
        self._store_lock = trio.Lock()
        self._delivered: dict[tuple[str, str], list[int]] = {}
        self.batches_written = 0
        self.records_written = 0

    def append(self, record: Record) -> int:
        """Queue ``record`` for the store; return its sequence number."""
        if not self.enabled:
            return 0
        if type(record) is MessageEnqueued:
            self._unwritten_enqueues[(record.vhost, record.queue, record.message_id)] = len(
                self._pending
            )
        self._pending.append(record)
        self._appended += 1
        self._wake.set()
        return self._appended

    def remove_message(self, vhost: str, queue: str, message_id: int) -> bool:
        """Journal that a stored message left a queue (acked, dropped, dead-lettered).

        Returns True when the message's ``MessageEnqueued`` was still waiting for the writer:
        then neither record is written, since the message was consumed before it reached the
        disk. The caller may then confirm its publish at once, as RabbitMQ confirms such a
        message; with consumers keeping up, most persistent messages cost the store nothing.
        """
        if not self.enabled:
            return False
        index = self._unwritten_enqueues.pop((vhost, queue, message_id), None)
        if index is not None:
            self._pending[index] = None
            self.annihilated += 1
            return True
        self.append(MessageRemoved(vhost, queue, message_id))
        return False

    def note_delivered(self, vhost: str, queue: str, message_id: int) -> None:
        """Tell the store (lazily, with the next batch) that a stored message was delivered."""
        if self.enabled:
            self._delivered.setdefault((vhost, queue), []).append(message_id)
            self._wake.set()

    def when_durable(self, seq: int, callback: Callable[[], None]) -> None:
        """Run ``callback`` once record ``seq`` is durable (at once if it already is)."""
        if seq <= self.durable_seq:
            callback()
        else:
            heapq.heappush(self._callbacks, (seq, next(self._order), callback))

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest record appended."""
        return self._appended

    @property
    def backlog(self) -> int:
        """Records appended but not yet durable."""
        return self._appended - self.durable_seq

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer loop; runs until cancelled. A store failure stops the broker."""
        task_status.started()
        if not self.enabled:
            await trio.sleep_forever()
        cancelled = self.annihilated
        while True:
            if not self._pending and not self._delivered:
                self._wake = trio.Event()
                await self._wake.wait()
            limit = MAX_BATCH
            if self.annihilated != cancelled:
                # Consumers keep up: write only what is here now, after GATHER_SECONDS, so
                # every record waits that long for its removal to cancel it.
                limit = min(limit, len(self._pending))
                await trio.sleep(GATHER_SECONDS)
            cancelled = self.annihilated
            await self._write_one_batch(limit)

    async def _write_one_batch(self, limit: int = MAX_BATCH) -> None:
        batch = self._pending[:limit]
        del self._pending[:limit]
        self._forget_unwritten(len(batch))
        delivered, self._delivered = self._delivered, {}
        # Shielded: a batch handed to the store must finish and be accounted for even if the
        # broker is shutting down, or confirms could be sent for records never written.
        with trio.CancelScope(shield=True):
            async with self._store_lock:
                await trio.to_thread.run_sync(self._write, batch, delivered)
        self.durable_seq += len(batch)
        self.batches_written += 1
        self.records_written += sum(record is not None for record in batch)
        self._run_callbacks()

    def _forget_unwritten(self, taken: int) -> None:
        """Enqueues handed to the writer can no longer be cancelled; reindex the rest."""
        if not self._pending:
            self._unwritten_enqueues.clear()
            return
        self._unwritten_enqueues = {
            key: index - taken for key, index in self._unwritten_enqueues.items() if index >= taken
        }

    def _write(
        self, batch: list[Record | None], delivered: dict[tuple[str, str], list[int]]
    ) -> None:
        """Runs in a worker thread: one durable batch, then the lazy delivery marks."""
        records = [record for record in batch if record is not None]
        if records:
            self.store.apply(records)
        for (vhost, queue), message_ids in delivered.items():
            self.store.mark_delivered(vhost, queue, message_ids)

    def _run_callbacks(self) -> None:
        callbacks = self._callbacks
        durable = self.durable_seq
        while callbacks and callbacks[0][0] <= durable:
            heapq.heappop(callbacks)[2]()

    async def read_queue(
        self, vhost: str, queue: str, after_message_id: int, limit: int
    ) -> list[MessageEnqueued]:
        """Page in stored messages of a queue, once everything appended so far is durable."""
        await self.flush()
        async with self._store_lock:
            return await trio.to_thread.run_sync(
                self.store.read_queue, vhost, queue, after_message_id, limit
            )

    async def flush(self) -> None:
        """Wait until everything appended so far is durable (used at shutdown and by tests).

        Delivery marks still waiting are written too: a store promises exact marks after a
        clean close, and the broker closes it right after this.
        """
        if not self.enabled:
            return
        if self.durable_seq < self._appended:
            done = trio.Event()
            self.when_durable(self._appended, done.set)
            await done.wait()
        if self._delivered:
            delivered, self._delivered = self._delivered, {}
            with trio.CancelScope(shield=True):
                async with self._store_lock:
                    await trio.to_thread.run_sync(self._write, [], delivered)
