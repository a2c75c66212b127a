"""The journal: the one ordered path of every durable change to the store.

Callers append records (declares, bindings, persistent enqueues and their removal) and get a
sequence number back. A single writer task takes everything appended since its last write and
hands it to the store as one batch in a worker thread (group commit: many publishers share one
fsync). When the batch is durable, callbacks registered with :meth:`Journal.when_durable` run
in order on the trio loop; publisher confirms and tx.commit-ok are sent from there.

When the store is not durable (the in-memory default), nothing is written and every sequence
number is durable at once, so the memory-only broker pays nothing for the journal.

**Durability gates** are the seam for replication. A record is *durable* (confirmable) once the
store wrote it *and* every gate released it. An HA plugin adds a gate
(:class:`DurabilityGate`); the journal tells it on the trio thread what each batch wrote, and
the gate later calls :meth:`Journal.release` (replicas have it) or :meth:`Journal.fail` (they
never will: the publishes are nacked, not confirmed). A store that replicates by itself (Berkeley
DB's replication manager) instead raises :class:`plugmq.store.base.NotReplicated` from
``apply``: the batch is on the local disk but its publishes are nacked. Either way no network
I/O runs on the writer thread's behalf and the store is never wrapped.

When mastership is lost, :meth:`Journal.fence` stops it at once: nothing more is written and no
callback (confirm, declare-ok, commit-ok) runs for what was pending; :meth:`Journal.reset`
starts a new mastership's journal from the recovered state.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog
import trio

from plugmq.store.base import NotReplicated, Store
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
#: Failed ranges remembered for channels still waiting on them (failures are rare).
FAILED_RANGES_KEPT = 1024


class DurabilityGate(Protocol):
    """Holds records back from being confirmed until something else has them (replication).

    Register with :meth:`Journal.add_gate` (or ``broker.add_durability_gate``, which survives a
    new mastership). Every method runs on the trio thread; none may block.
    """

    #: For logs and ``plugmq stat ha``.
    name: str

    def written(self, upto_seq: int, records: Sequence[Record]) -> None:
        """The store made every record up to ``upto_seq`` durable locally; ``records`` are
        the batch's records (cancelled pairs left out). Ship or track them, then call
        ``journal.release(self, seq)`` or ``journal.fail(self, seq, reason)``."""
        ...


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
        #: Every record up to here is in the store (durable_seq may lag behind: gates).
        self.written_seq = 0
        self._gates: dict[DurabilityGate, int] = {}
        #: (first, last) sequence ranges that were written but will never be confirmed.
        self.failures: deque[tuple[int, int]] = deque(maxlen=FAILED_RANGES_KEPT)
        self.fenced = False

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

    # -- durability gates (replication seam) ---------------------------------------------------

    def add_gate(self, gate: DurabilityGate) -> None:
        """Hold every record written from now on until ``gate`` releases it."""
        self._gates[gate] = self.written_seq

    def remove_gate(self, gate: DurabilityGate) -> None:
        """Stop waiting for ``gate`` (what it held becomes durable if the store has it)."""
        self._gates.pop(gate, None)
        self._advance()

    def release(self, gate: DurabilityGate, upto_seq: int) -> None:
        """``gate`` has every record up to ``upto_seq`` (e.g. a quorum of replicas acked)."""
        if gate in self._gates and upto_seq > self._gates[gate]:
            self._gates[gate] = min(upto_seq, self.written_seq)
            self._advance()

    def fail(self, gate: DurabilityGate, upto_seq: int, reason: str) -> None:
        """``gate`` will never have the records up to ``upto_seq``: they are not confirmed.

        Publishers are sent basic.nack for them; they stay in the local store.
        """
        held = self._gates.get(gate)
        if held is None or upto_seq <= held:
            return
        upto_seq = min(upto_seq, self.written_seq)
        self._mark_failed(held + 1, upto_seq, reason)
        self._gates[gate] = upto_seq
        self._advance()

    def _mark_failed(self, first: int, last: int, reason: str) -> None:
        log.warning("journal_not_confirmed", first_seq=first, last_seq=last, reason=reason)
        self.failures.append((first, last))

    def is_failed(self, seq: int) -> bool:
        """True when record ``seq`` was written but will never be confirmed (nack it)."""
        failed = self.failures
        if not failed or seq <= 0:
            return False
        index = bisect.bisect_right(failed, (seq, float("inf"))) - 1
        return index >= 0 and failed[index][0] <= seq <= failed[index][1]

    def _advance(self) -> None:
        """durable_seq = what the store wrote and every gate released."""
        durable = self.written_seq
        for mark in self._gates.values():
            durable = min(durable, mark)
        if durable > self.durable_seq:
            self.durable_seq = durable
            self._run_callbacks()

    # -- fencing --------------------------------------------------------------------------------

    def fence(self) -> None:
        """Mastership is lost: write nothing more, run no callback for anything pending."""
        self.fenced = True
        self._callbacks.clear()

    def reset(self) -> None:
        """Start a new mastership: forget what a fenced master had pending."""
        self._pending = []
        self._unwritten_enqueues = {}
        self._delivered = {}
        self._callbacks = []
        self.failures.clear()
        self.durable_seq = self.written_seq = self._appended
        self._gates = dict.fromkeys(self._gates, self._appended)
        self.enabled = self.store.durable
        self.fenced = False

    def when_durable(self, seq: int, callback: Callable[[], None]) -> None:
        """Run ``callback`` once record ``seq`` is durable (at once if it already is).

        "Durable" includes failed records (see :meth:`is_failed`): the callback runs once the
        record's fate is known, and callers that confirm check :meth:`is_failed`.
        """
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
            if (not self._pending and not self._delivered) or self.fenced:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
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
        first = self.written_seq + 1
        with trio.CancelScope(shield=True):
            async with self._store_lock:
                replication_error = await trio.to_thread.run_sync(self._write, batch, delivered)
        if self.fenced:
            return  # written before the fence took effect; nobody is told
        self.written_seq += len(batch)
        self.batches_written += 1
        self.records_written += sum(record is not None for record in batch)
        if replication_error is not None:
            self._mark_failed(first, self.written_seq, replication_error)
        if self._gates:
            self._tell_gates(batch)
        self._advance()

    def _tell_gates(self, batch: list[Record | None]) -> None:
        records = [record for record in batch if record is not None]
        for gate in list(self._gates):
            gate.written(self.written_seq, records)

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
    ) -> str | None:
        """Runs in a worker thread: one durable batch, then the lazy delivery marks.

        Returns the reason when the store wrote the batch but could not replicate it.
        """
        records = [record for record in batch if record is not None]
        failure = None
        if records:
            try:
                self.store.apply(records)
            except NotReplicated as error:
                failure = str(error) or "not replicated"
        for (vhost, queue), message_ids in delivered.items():
            self.store.mark_delivered(vhost, queue, message_ids)
        return failure

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
