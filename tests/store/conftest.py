"""Fixtures for the store tests: Berkeley DB stores in tmp_path and a canonical record form."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from plugmq.store.records import (
    BindingAdded,
    ConfigSet,
    ExchangeDeclared,
    MessageEnqueued,
    QueueDeclared,
    Record,
)
from plugmq_store_bdb import BDBStore

_PHASES = {ConfigSet: 0, ExchangeDeclared: 1, QueueDeclared: 2, BindingAdded: 3, MessageEnqueued: 4}


def canonical_form(records: Iterable[Record]) -> dict:
    """What recovered records mean, independent of orders the contract leaves open.

    Asserts the order the contract does fix: config, exchanges, queues, bindings, messages;
    each queue's messages together and oldest first. Returns a comparable structure.
    """
    form: dict = {"config": {}, "exchanges": {}, "queues": {}, "bindings": [], "messages": {}}
    phase = 0
    last_queue = None
    for record in records:
        kind = _PHASES[type(record)]
        assert kind >= phase, f"{record!r} out of contract order"
        phase = kind
        if isinstance(record, MessageEnqueued):
            queue = (record.vhost, record.queue)
            if queue != last_queue:
                assert queue not in form["messages"], f"messages of {queue} are not together"
                form["messages"][queue] = []
                last_queue = queue
            form["messages"][queue].append(record)
        else:
            _add_entity(form, record)
    form["bindings"].sort(key=repr)
    for queue, messages in form["messages"].items():
        ids = [m.message_id for m in messages]
        assert ids == sorted(set(ids)), f"messages of {queue} not oldest first: {ids}"
    return form


def _add_entity(form: dict, record: Record) -> None:
    if isinstance(record, ConfigSet):
        form["config"][(record.namespace, record.key)] = record.value
    elif isinstance(record, ExchangeDeclared):
        form["exchanges"][(record.vhost, record.name)] = record
    elif isinstance(record, QueueDeclared):
        form["queues"][(record.vhost, record.name)] = record
    else:
        form["bindings"].append(record)


def recover_all(store) -> list[Record]:
    """Every record the store recovers (ignoring progress)."""
    return list(store.recover(lambda done, total: None))


@pytest.fixture
def canonical() -> Callable[[Iterable[Record]], dict]:
    """:func:`canonical_form`, for tests."""
    return canonical_form


@pytest.fixture
def recover() -> Callable[[object], list[Record]]:
    """:func:`recover_all`, for tests."""
    return recover_all


@pytest.fixture
def bdb_home(tmp_path: Path) -> Path:
    """The Berkeley DB home of a broker whose --data-dir is ``tmp_path/data``."""
    return tmp_path / "data" / "bdb"


@pytest.fixture
def open_bdb(bdb_home: Path) -> Iterator[Callable[..., BDBStore]]:
    """Open a :class:`BDBStore` (in ``bdb_home`` unless told); every one is closed at the end."""
    stores: list[BDBStore] = []

    def factory(home: Path | None = None, **options) -> BDBStore:
        store = BDBStore(home or bdb_home, sync=options.pop("sync", "nosync"), **options)
        store.open()
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.close()
