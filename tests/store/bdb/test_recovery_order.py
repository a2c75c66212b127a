"""Recovery order with several queues, inline and shared bodies, and progress reports."""

from __future__ import annotations

import pytest

from plugmq.store.records import (
    BindingAdded,
    ConfigSet,
    ExchangeDeclared,
    MessageEnqueued,
    MessageRemoved,
    QueueDeclared,
    QueueDeleted,
    QueuePurged,
)
from plugmq_store_bdb.encoding import INLINE_LIMIT
from plugmq_store_bdb.reader import PROGRESS_EVERY

#: Body sizes: kept inline in messages.db, and stored once in bodies.db.
SMALL, LARGE = 16, INLINE_LIMIT


def enqueue(queue: str, message_id: int, vhost: str = "/", size: int = SMALL) -> MessageEnqueued:
    """A message whose content depends only on its id (as for a message routed to N queues)."""
    body = (b"body %d " % message_id).ljust(size, b".")
    return MessageEnqueued(vhost, queue, message_id, "fan", "", b"h", body)


def test_entities_then_each_queue_oldest_first(open_bdb, recover) -> None:
    store = open_bdb()
    store.apply(
        [
            QueueDeclared("/", "zeta"),
            BindingAdded("/", "fan", "zeta", "queue", ""),
            ExchangeDeclared("/", "fan", "fanout"),
            QueueDeclared("/", "alpha"),
            QueueDeclared("v2", "alpha"),
            ConfigSet("vhost", "v2", {"description": "second"}),
            enqueue("zeta", 1),
            enqueue("alpha", 1),
            enqueue("alpha", 2, vhost="v2", size=LARGE),
        ]
    )
    store.apply([enqueue("zeta", 3), enqueue("alpha", 3), enqueue("zeta", 2, size=LARGE)])
    store.close()
    records = recover(open_bdb())
    kinds = [type(r).__name__ for r in records]
    assert kinds[:5] == [
        "ConfigSet",
        "ExchangeDeclared",
        "QueueDeclared",
        "QueueDeclared",
        "QueueDeclared",
    ]
    assert kinds[5] == "BindingAdded"
    per_queue: dict[tuple[str, str], list[int]] = {}
    for record in records[6:]:
        assert isinstance(record, MessageEnqueued)
        per_queue.setdefault((record.vhost, record.queue), []).append(record.message_id)
    assert per_queue == {("/", "alpha"): [1, 3], ("/", "zeta"): [1, 2, 3], ("v2", "alpha"): [2]}
    shared = [r for r in records if isinstance(r, MessageEnqueued) and r.message_id == 1]
    assert {r.queue for r in shared} == {"alpha", "zeta"}
    assert all(r.body == enqueue("a", 1).body and r.exchange == "fan" for r in shared)
    large = [r for r in records if isinstance(r, MessageEnqueued) and r.message_id == 2]
    assert [r.body for r in large] == [enqueue("a", 2, size=LARGE).body] * 2


def test_shared_body_is_stored_once_and_freed_with_the_last_reference(open_bdb) -> None:
    store = open_bdb()
    store.apply([QueueDeclared("/", q) for q in ("a", "b", "c")])
    large = [enqueue("a", 1, size=LARGE), enqueue("b", 1, size=LARGE)]
    large += [enqueue("c", 1, size=LARGE), enqueue("a", 2, size=LARGE)]
    store.apply(large)
    assert store.stats() == {"entities": 3, "messages": 4, "bodies": 2, "refs": 2}
    store.apply([MessageRemoved("/", "a", 1)])
    assert store.stats()["bodies"] == 2
    store.apply([QueuePurged("/", "b")])
    assert store.stats()["bodies"] == 2
    store.apply([QueueDeleted("/", "c")])
    assert store.stats() == {"entities": 2, "messages": 1, "bodies": 1, "refs": 1}
    store.apply([MessageRemoved("/", "a", 2)])
    assert store.stats() == {"entities": 2, "messages": 0, "bodies": 0, "refs": 0}


def test_small_messages_are_kept_inline_one_copy_per_queue(open_bdb, recover) -> None:
    store = open_bdb()
    store.apply([QueueDeclared("/", q) for q in ("a", "b")])
    store.apply([enqueue("a", 1), enqueue("b", 1), enqueue("a", 2)])
    assert store.stats() == {"entities": 2, "messages": 3, "bodies": 0, "refs": 0}
    store.apply([MessageRemoved("/", "a", 1)])
    recovered = [r for r in recover(store) if isinstance(r, MessageEnqueued)]
    assert [(r.queue, r.message_id, r.body) for r in recovered] == [
        ("a", 2, enqueue("a", 2).body),
        ("b", 1, enqueue("b", 1).body),
    ]
    store.apply([QueuePurged("/", "a"), QueueDeleted("/", "b")])
    assert store.stats() == {"entities": 1, "messages": 0, "bodies": 0, "refs": 0}


def test_enqueueing_the_same_entry_again_replaces_it(open_bdb, recover) -> None:
    store = open_bdb()
    store.apply([enqueue("a", 1), enqueue("a", 1)])
    assert store.stats()["messages"] == 1
    store.apply([enqueue("a", 1, size=LARGE)])  # inline copy replaced by a shared body
    assert store.stats() == {"entities": 0, "messages": 1, "bodies": 1, "refs": 1}
    store.apply([enqueue("a", 1)])  # and back: the shared body is released
    assert store.stats() == {"entities": 0, "messages": 1, "bodies": 0, "refs": 0}
    (record,) = recover(store)
    assert record.body == enqueue("a", 1).body


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_enqueue_and_remove_in_one_batch_leaves_nothing(open_bdb, size: int) -> None:
    store = open_bdb()
    store.apply(
        [enqueue("a", 1, size=size), enqueue("b", 1, size=size), MessageRemoved("/", "a", 1)]
    )
    store.apply([MessageRemoved("/", "b", 1), MessageRemoved("/", "b", 1)])
    assert store.stats() == {"entities": 0, "messages": 0, "bodies": 0, "refs": 0}


def test_progress_is_reported_during_long_recoveries(open_bdb) -> None:
    store = open_bdb()
    total = 2 * PROGRESS_EVERY + 500
    for start in range(0, total, 5000):
        store.apply([enqueue("q", i) for i in range(start, min(total, start + 5000))])
    calls: list[tuple[int, int]] = []
    count = sum(1 for _ in store.recover(lambda done, all_: calls.append((done, all_))))
    assert count == total
    assert calls == [(PROGRESS_EVERY, total), (2 * PROGRESS_EVERY, total), (total, total)]
