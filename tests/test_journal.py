"""The journal: group commit, durability callbacks in order, and enqueue/removal cancelling."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from plugmq.journal import GATHER_SECONDS, Journal
from plugmq.store.memory import MemoryStore
from plugmq.store.records import MessageEnqueued, MessageRemoved, QueueDeclared, Record


class RecordingStore(MemoryStore):
    """The memory store, made to count as durable and to remember each batch it applied."""

    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Record]] = []

    def apply(self, records: Sequence[Record]) -> None:
        self.batches.append(list(records))
        super().apply(records)


def enqueued(message_id: int) -> MessageEnqueued:
    return MessageEnqueued("/", "q", message_id, "", "q", b"\x00<" + bytes(12), b"body")


async def test_records_appended_together_are_written_as_one_batch() -> None:
    store = RecordingStore()
    journal = Journal(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        seqs = [journal.append(enqueued(i)) for i in range(1, 101)]
        await journal.flush()
        nursery.cancel_scope.cancel()
    assert seqs == list(range(1, 101))
    assert [len(batch) for batch in store.batches] == [100]


async def test_durability_callbacks_run_in_sequence_order() -> None:
    journal = Journal(RecordingStore())
    order: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        first = journal.append(enqueued(1))
        second = journal.append(enqueued(2))
        journal.when_durable(second, lambda: order.append(2))
        journal.when_durable(first, lambda: order.append(1))
        await journal.flush()
        journal.when_durable(first, lambda: order.append(3))  # already durable: at once
        nursery.cancel_scope.cancel()
    assert order == [1, 2, 3]


async def test_removal_before_the_write_cancels_the_enqueue() -> None:
    store = RecordingStore()
    journal = Journal(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        journal.append(QueueDeclared("/", "q"))
        seq = journal.append(enqueued(1))
        journal.append(enqueued(2))
        assert journal.remove_message("/", "q", 1), "an unwritten enqueue is cancelled"
        confirmed = trio.Event()
        journal.when_durable(seq, confirmed.set)
        await journal.flush()
        assert confirmed.is_set(), "a cancelled enqueue still counts as durable for confirms"
        assert not journal.remove_message("/", "q", 2)  # already written: must be journaled
        await journal.flush()
        nursery.cancel_scope.cancel()
    written = [record for batch in store.batches for record in batch]
    assert written == [QueueDeclared("/", "q"), enqueued(2), MessageRemoved("/", "q", 2)]
    assert journal.annihilated == 1


async def test_writer_gathers_only_while_consumers_cancel_enqueues(autojump_clock) -> None:
    store = RecordingStore()
    journal = Journal(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        journal.append(enqueued(1))
        started = trio.current_time()
        await journal.flush()
        assert trio.current_time() - started < GATHER_SECONDS, "nothing cancelled: no wait"

        journal.append(enqueued(2))
        assert journal.remove_message("/", "q", 2)
        journal.append(enqueued(3))
        started = trio.current_time()
        await trio.sleep(GATHER_SECONDS / 2)
        journal.append(enqueued(4))  # arrived during the wait: waits for the next batch
        await journal.flush()
        assert trio.current_time() - started >= GATHER_SECONDS
        nursery.cancel_scope.cancel()
    assert store.batches == [[enqueued(1)], [enqueued(3)], [enqueued(4)]]


class RefusingGate:
    """A gate that lets batches through until told to refuse (an HA lease that lapsed)."""

    name = "refusing"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.refuse = False

    def may_write(self) -> str | None:
        return "lease lapsed" if self.refuse else None

    def written(self, upto_seq: int, records: Sequence[Record]) -> None:
        self.journal.release(self, upto_seq)


async def test_a_gate_that_refuses_before_a_batch_keeps_it_out_of_the_store() -> None:
    store = RecordingStore()
    journal = Journal(store)
    gate = RefusingGate(journal)
    journal.add_gate(gate)
    confirmed: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        first = journal.append(enqueued(1))
        journal.when_durable(first, lambda: confirmed.append(first))
        await journal.flush()
        gate.refuse = True
        second = journal.append(enqueued(2))
        journal.when_durable(second, lambda: confirmed.append(second))
        with trio.fail_after(5):
            while not journal.fenced:
                await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    assert [[r.message_id for r in batch] for batch in store.batches] == [[1]]
    assert confirmed == [first], "a refused batch must confirm nothing"
    assert journal.durable_seq == first
