"""Stores of formats 1 and 2 are upgraded in place to format 3 when opened.

Old stores are built by writing their entries raw, as those versions wrote them: message
entries whose flag byte carries no enqueue time, and binding keys holding
``repr(sorted(arguments.items()))``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from plugmq.store.records import (
    BindingAdded,
    BindingRemoved,
    MessageEnqueued,
    MessageRemoved,
    QueueDeclared,
)
from plugmq_store_bdb import BDBStore, encoding

#: Flag bytes of formats 1 and 2 (no enqueue time).
OLD_FRESH = b"\x00"
OLD_DELIVERED = b"\x01"


def old_binding_key(record: BindingAdded) -> bytes:
    """How formats 1 and 2 keyed a binding."""
    fields = (record.vhost, record.source, record.destination, record.destination_kind)
    arguments = repr(sorted(record.arguments.items()))
    return encoding.BINDING + encoding.pack_strings(*fields, record.routing_key, arguments)


def write_old_store(home: Path, marker: bytes, entries: dict[str, list[tuple[bytes, bytes]]]):
    """A closed store of an old format holding exactly ``entries`` (per database) raw.

    Old formats had no clean-shutdown marker, so none is left.
    """
    store = BDBStore(home)
    store.open()
    dbs = store._databases()
    dbs.entities.put(encoding.FORMAT_KEY, marker)
    for name, pairs in entries.items():
        for key, value in pairs:
            getattr(dbs, name).put(key, value)
    store._marks_complete = False  # as an old version's close: no marker
    store.close()


def test_format_1_shared_bodies_stay_readable_and_removable(bdb_home: Path, recover) -> None:
    old = MessageEnqueued("/", "q", 7, "x", "k", b"h", b"small, stored the old way")
    write_old_store(
        bdb_home,
        b"plugmq-store-bdb 1",
        {
            "messages": [(encoding.message_key("/", "q", 7), OLD_FRESH)],
            "refs": [(encoding.pack_id(7), encoding.pack_count(1))],
            "bodies": [(encoding.pack_id(7), encoding.encode_message(old))],
        },
    )
    store = BDBStore(bdb_home)
    store.open()
    assert store._databases().entities.get(encoding.FORMAT_KEY) == encoding.FORMAT_VALUE
    # No clean-shutdown marker in old formats: whether it stopped cleanly is unknown.
    assert recover(store) == [replace(old, redelivered=True)]
    store.apply([MessageRemoved("/", "q", 7)])
    assert store.stats() == {"entities": 0, "messages": 0, "bodies": 0, "refs": 0}
    store.close()


def test_format_2_is_upgraded_and_bindings_rekeyed(bdb_home: Path, recover) -> None:
    queue = QueueDeclared("/", "q")
    nested = BindingAdded("/", "x", "q", "queue", "rk", {"t": {"b": 1, "a": [1, "s"]}})
    plain = BindingAdded("/", "x", "q", "queue", "rk")
    fresh = MessageEnqueued("/", "q", 1, "x", "rk", b"h", b"one")
    delivered = MessageEnqueued("/", "q", 2, "x", "rk", b"h", b"two")
    write_old_store(
        bdb_home,
        b"plugmq-store-bdb 2",
        {
            "entities": [
                (encoding.entity_key(queue), encoding.encode_entity(queue)),
                (old_binding_key(nested), encoding.encode_entity(nested)),
                (old_binding_key(plain), encoding.encode_entity(plain)),
            ],
            "messages": [
                (encoding.message_key("/", "q", 1), OLD_FRESH + encoding.encode_message(fresh)),
                (
                    encoding.message_key("/", "q", 2),
                    OLD_DELIVERED + encoding.encode_message(delivered),
                ),
            ],
        },
    )
    store = BDBStore(bdb_home)
    store.open()
    assert store._databases().entities.get(encoding.FORMAT_KEY) == encoding.FORMAT_VALUE
    recovered = recover(store)
    assert recovered[0] == queue
    assert sorted(recovered[1:3], key=repr) == sorted([nested, plain], key=repr)
    assert recovered[3:] == [replace(fresh, redelivered=True), replace(delivered, redelivered=True)]
    # The same binding with its nested table in another order is the same binding now.
    reordered = BindingRemoved("/", "x", "q", "queue", "rk", {"t": {"a": [1, "s"], "b": 1}})
    newer = MessageEnqueued("/", "q", 3, "x", "rk", b"h", b"three", enqueued_at=1.7e9)
    store.apply([reordered, newer])
    store.close()

    store = BDBStore(bdb_home)
    store.open()
    recovered = recover(store)
    assert [r for r in recovered if isinstance(r, BindingAdded)] == [plain]
    # The old messages stay redelivered after this clean restart; the newer one is exact.
    assert [(r.message_id, r.redelivered, r.enqueued_at) for r in recovered[2:]] == [
        (1, True, 0.0),
        (2, True, 0.0),
        (3, False, 1.7e9),
    ]
    store.close()


def test_an_interrupted_upgrade_runs_again(bdb_home: Path, recover) -> None:
    """The re-keying and the new marker commit together: a store still marked format 2 (as a
    crash during the upgrade leaves it) holds only old keys and is upgraded at the next open."""
    binding = BindingAdded("/", "x", "q", "queue", "rk", {"k": 1})
    write_old_store(
        bdb_home,
        b"plugmq-store-bdb 2",
        {"entities": [(old_binding_key(binding), encoding.encode_entity(binding))]},
    )
    store = BDBStore(bdb_home)
    store.open()
    entities = store._databases().entities
    assert entities.get(old_binding_key(binding)) is None
    assert entities.get(encoding.binding_key(binding)) == encoding.encode_entity(binding)
    store.close()
