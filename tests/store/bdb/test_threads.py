"""The core calls the store from trio worker threads: each call may run on a different thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from plugmq.store.records import MessageEnqueued, QueueDeclared
from plugmq_store_bdb import BDBStore


def test_each_call_on_a_new_thread(bdb_home: Path, recover) -> None:
    store = BDBStore(bdb_home, sync="nosync")

    def on_thread(function, *args):
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(function, *args).result()

    on_thread(store.open)
    on_thread(store.apply, [QueueDeclared("/", "q")])
    for start in range(0, 300, 100):
        records = [
            MessageEnqueued("/", "q", i, "", "q", b"h", b"b") for i in range(start, start + 100)
        ]
        on_thread(store.apply, records)
    on_thread(store.mark_delivered, "/", "q", [5])
    recovered = on_thread(recover, store)
    on_thread(store.close)
    messages = [r for r in recovered if isinstance(r, MessageEnqueued)]
    assert [m.message_id for m in messages] == list(range(300))
    assert [m.message_id for m in messages if m.redelivered] == [5]


def test_recovery_iterated_from_several_threads(bdb_home: Path) -> None:
    store = BDBStore(bdb_home, sync="nosync")
    store.open()
    store.apply([MessageEnqueued("/", "q", i, "", "q", b"h", b"b") for i in range(50)])
    records = store.recover(lambda done, total: None)
    seen = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        while (record := pool.submit(next, records, None).result()) is not None:
            seen.append(record.message_id)
    store.close()
    assert seen == list(range(50))
