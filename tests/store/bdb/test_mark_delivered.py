"""mark_delivered: recovered messages carry redelivered=True, across restarts and kill -9."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plugmq.store.records import MessageEnqueued, MessageRemoved, QueueDeclared
from plugmq_store_bdb import BDBStore
from plugmq_store_bdb.encoding import INLINE_LIMIT

MARKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from plugmq.store.records import MessageEnqueued, QueueDeclared
    from plugmq_store_bdb import BDBStore
    store = BDBStore(Path(sys.argv[1]), sync="commit")
    store.open()
    store.apply([QueueDeclared("/", "q")] + [
        MessageEnqueued("/", "q", i, "", "q", b"h", b"body") for i in range(1, 11)
    ])
    store.mark_delivered("/", "q", [2, 4, 6])
    print("marked", flush=True)
    time.sleep(60)
    """
)


def enqueue(queue: str, message_id: int, size: int = 0) -> MessageEnqueued:
    """A message on ``queue``: small by default, kept in bodies.db from INLINE_LIMIT bytes."""
    return MessageEnqueued("/", queue, message_id, "", queue, b"h", b"b" * size or b"body")


def redelivered(records) -> dict[tuple[str, int], bool]:
    """``(queue, id) -> redelivered`` of the recovered messages."""
    return {
        (r.queue, r.message_id): r.redelivered for r in records if isinstance(r, MessageEnqueued)
    }


def test_marked_messages_recover_as_redelivered(open_bdb, recover) -> None:
    store = open_bdb()
    store.apply([QueueDeclared("/", "q"), *(enqueue("q", i) for i in range(1, 6))])
    store.mark_delivered("/", "q", [1, 3, 99])
    assert redelivered(recover(store)) == {
        ("q", 1): True,
        ("q", 2): False,
        ("q", 3): True,
        ("q", 4): False,
        ("q", 5): False,
    }
    store.close()
    assert redelivered(recover(open_bdb()))[("q", 3)] is True


def test_mark_is_per_queue_for_a_shared_message(open_bdb, recover) -> None:
    store = open_bdb()
    store.apply([enqueue("a", 1), enqueue("b", 1)])
    store.mark_delivered("/", "a", [1])
    assert redelivered(recover(store)) == {("a", 1): True, ("b", 1): False}


@pytest.mark.parametrize("size", [4, INLINE_LIMIT])
def test_marking_a_removed_message_does_not_bring_it_back(open_bdb, recover, size) -> None:
    store = open_bdb()
    store.apply([enqueue("q", 1, size), enqueue("q", 2, size), MessageRemoved("/", "q", 1)])
    store.mark_delivered("/", "q", [1, 2])
    assert redelivered(recover(store)) == {("q", 2): True}
    assert [r.body for r in recover(store)] == [b"b" * size]
    assert store.stats()["messages"] == 1
    assert store.stats()["bodies"] == (1 if size >= INLINE_LIMIT else 0)


def test_marking_an_unknown_queue_is_harmless(open_bdb, recover) -> None:
    store = open_bdb()
    store.mark_delivered("/", "nowhere", [1, 2, 3])
    store.mark_delivered("/", "nowhere", [])
    assert recover(store) == []


def test_every_message_is_redelivered_after_kill_9(bdb_home: Path, open_bdb, recover) -> None:
    marker = subprocess.Popen(
        [sys.executable, "-c", MARKER, str(bdb_home)], stdout=subprocess.PIPE, text=True
    )
    try:
        for _ in range(20):
            line = marker.stdout.readline()
            if not line or line.startswith("marked"):
                break
        assert line.startswith("marked"), "the marking process did not finish"
    finally:
        marker.kill()
        marker.wait(timeout=10)
        marker.stdout.close()
    # After a kill -9 the marks cannot be trusted to be complete: every message is flagged.
    flags = redelivered(recover(open_bdb()))
    assert sorted(flags) == [("q", i) for i in range(1, 11)]
    assert all(flags.values())


def test_marks_are_exact_after_a_clean_close(open_bdb, recover) -> None:
    store = open_bdb()
    store.apply([QueueDeclared("/", "q"), *(enqueue("q", i) for i in range(1, 11))])
    store.mark_delivered("/", "q", [2, 4, 6])
    store.close()
    flags = redelivered(recover(open_bdb()))
    assert [i for (_, i), flag in sorted(flags.items()) if flag] == [2, 4, 6]
    assert len(flags) == 10


def test_mark_delivered_store_is_not_kept_open(bdb_home: Path) -> None:
    store = BDBStore(bdb_home)
    store.open()
    store.mark_delivered("/", "q", [1])
    store.close()
