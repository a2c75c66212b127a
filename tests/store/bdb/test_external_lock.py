"""``--bdb-lock external``: an HA plugin guarantees one writer, so the store neither takes its
own flock (a paused old master would keep it) nor writes anything when it closes (the closing
broker may have lost the right to write)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plugmq.store import StoreError
from plugmq.store.records import MessageEnqueued, QueueDeclared
from plugmq_store_bdb import BDBStore

from .test_errors import HOLDER, make_store


def recovered_ids(home: Path) -> list[int]:
    store = BDBStore(home, lock="external")
    store.open()
    try:
        return [
            r.message_id
            for r in store.recover(lambda done, total: None)
            if isinstance(r, MessageEnqueued)
        ]
    finally:
        store.close()


def snapshot(home: Path) -> dict[str, bytes]:
    """The bytes of the database and log files (region files ``__db.*`` are per opener)."""
    return {
        p.name: p.read_bytes()
        for p in home.iterdir()
        if p.suffix == ".db" or p.name.startswith("log.")
    }


def test_external_lock_opens_while_another_process_holds_the_flock(bdb_home: Path) -> None:
    make_store(bdb_home, messages=10)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(bdb_home)], stdout=subprocess.PIPE, text=True
    )
    try:
        for _ in range(20):  # the holder logs bdb.opened first
            line = holder.stdout.readline()
            if not line or line.startswith("ready"):
                break
        assert line.startswith("ready"), "the lock holder did not start"
        with pytest.raises(StoreError, match="in use by another broker"):
            BDBStore(bdb_home).open()
        assert sorted(recovered_ids(bdb_home)) == list(range(10))
    finally:
        holder.kill()
        holder.wait()


def test_close_with_an_external_lock_writes_nothing(bdb_home: Path) -> None:
    store = BDBStore(bdb_home, lock="external")
    store.open()
    store.apply([QueueDeclared("/", "q")])
    store.apply([MessageEnqueued("/", "q", i, "", "q", b"h", b"body") for i in range(500)])
    before = snapshot(bdb_home)
    store.close()
    assert snapshot(bdb_home) == before, "close wrote into the store files"
    assert sorted(recovered_ids(bdb_home)) == list(range(500)), "committed records lost"


def test_bad_lock_policy_is_refused(bdb_home: Path) -> None:
    with pytest.raises(ValueError, match="lock must be one of"):
        BDBStore(bdb_home, lock="none")
