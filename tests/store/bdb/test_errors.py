"""Bad data directories: a clear StoreError naming the path, never a traceback or empty start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from berkeleydb import db

from plugmq.store import StoreError
from plugmq.store.records import MessageEnqueued, QueueDeclared
from plugmq_store_bdb import BDBStore, encoding

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from plugmq_store_bdb import BDBStore
    store = BDBStore(Path(sys.argv[1]))
    store.open()
    print("ready", flush=True)
    time.sleep(60)
    """
)


def make_store(home: Path, messages: int = 2000) -> None:
    """A closed store holding one queue and some messages, small (inline) and large."""
    store = BDBStore(home, sync="nosync")
    store.open()
    records = [QueueDeclared("/", "q")]
    sizes = (encoding.INLINE_LIMIT, 100)
    records += [
        MessageEnqueued("/", "q", i, "x", "k", b"h", b"b" * sizes[i % 2]) for i in range(messages)
    ]
    store.apply(records)
    store.close()


def open_and_recover(home: Path) -> None:
    """Open the store and read everything, closing it whatever happens."""
    store = BDBStore(home)
    try:
        store.open()
        list(store.recover(lambda done, total: None))
    finally:
        store.close()


def test_data_dir_is_a_regular_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory")
    with pytest.raises(StoreError, match=f"{data_dir} is a file"):
        open_and_recover(data_dir / "bdb")


def test_store_dir_is_a_regular_file(bdb_home: Path) -> None:
    bdb_home.parent.mkdir()
    bdb_home.write_text("not a directory")
    with pytest.raises(StoreError, match=str(bdb_home)):
        open_and_recover(bdb_home)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_unreadable_directory(bdb_home: Path) -> None:
    make_store(bdb_home)
    bdb_home.chmod(0)
    try:
        with pytest.raises(StoreError, match=str(bdb_home)):
            open_and_recover(bdb_home)
    finally:
        bdb_home.chmod(0o755)


@pytest.mark.parametrize("filename", ["entities.db", "messages.db", "bodies.db", "refs.db"])
def test_garbage_database_file(bdb_home: Path, filename: str) -> None:
    make_store(bdb_home)
    (bdb_home / filename).write_bytes(os.urandom(32 * 1024))
    with pytest.raises(StoreError, match=f"{bdb_home / filename}.*move the directory away"):
        open_and_recover(bdb_home)


def test_text_file_instead_of_database(bdb_home: Path) -> None:
    make_store(bdb_home)
    (bdb_home / "entities.db").write_text("hello, I am somebody else's file\n")
    with pytest.raises(StoreError, match=f"{bdb_home / 'entities.db'}.*unexpected file type"):
        open_and_recover(bdb_home)


@pytest.mark.parametrize("filename", ["messages.db", "bodies.db"])
def test_damaged_page_in_the_middle(bdb_home: Path, filename: str) -> None:
    make_store(bdb_home)
    path = bdb_home / filename
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 300] = os.urandom(300)
    path.write_bytes(data)
    with pytest.raises(StoreError, match=str(bdb_home)):
        open_and_recover(bdb_home)


def test_garbage_log_file(bdb_home: Path) -> None:
    make_store(bdb_home)
    log_file = sorted(bdb_home.glob("log.*"))[-1]
    data = bytearray(log_file.read_bytes())
    data[100:20_000] = os.urandom(19_900)
    log_file.write_bytes(data)
    with pytest.raises(StoreError, match=str(bdb_home)):
        open_and_recover(bdb_home)


def test_foreign_berkeley_db_file(bdb_home: Path) -> None:
    bdb_home.mkdir(parents=True)
    foreign = db.DB()
    foreign.open(str(bdb_home / "entities.db"), dbtype=db.DB_HASH, flags=db.DB_CREATE)
    foreign.put(b"someone", b"else")
    foreign.close()
    with pytest.raises(StoreError, match=str(bdb_home)):
        open_and_recover(bdb_home)


def test_store_of_another_format(bdb_home: Path) -> None:
    make_store(bdb_home, messages=1)
    store = BDBStore(bdb_home)
    store.open()
    store._databases().entities.put(encoding.FORMAT_KEY, b"plugmq-store-bdb 99")
    store.close()
    with pytest.raises(StoreError, match="has format"):
        open_and_recover(bdb_home)


def test_second_opener_in_this_process(bdb_home: Path, open_bdb) -> None:
    open_bdb()
    with pytest.raises(StoreError, match=f"pid {os.getpid()}"):
        BDBStore(bdb_home).open()


def test_lock_is_released_by_close(bdb_home: Path) -> None:
    for _ in range(3):
        store = BDBStore(bdb_home)
        store.open()
        store.close()


def test_second_broker_process_is_refused_then_allowed_after_kill(bdb_home: Path) -> None:
    make_store(bdb_home, messages=10)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(bdb_home)], stdout=subprocess.PIPE, text=True
    )
    try:
        for _ in range(20):
            line = holder.stdout.readline()
            if not line or "ready" in line:
                break
        assert line.startswith("ready"), "the lock holder did not start"
        with pytest.raises(StoreError) as raised:
            open_and_recover(bdb_home)
        message = str(raised.value)
        assert f"pid {holder.pid}" in message
        assert str(bdb_home) in message
        assert "in use by another broker" in message
    finally:
        holder.kill()
        holder.wait(timeout=10)
        holder.stdout.close()
    open_and_recover(bdb_home)  # kill -9 leaves no stale lock


def test_using_a_closed_store(bdb_home: Path) -> None:
    store = BDBStore(bdb_home)
    with pytest.raises(StoreError, match="not open"):
        store.apply([QueueDeclared("/", "q")])


def test_damaged_clean_shutdown_marker(bdb_home: Path) -> None:
    make_store(bdb_home, messages=1)
    store = BDBStore(bdb_home)
    store.open()
    store.close()  # leaves the marker
    store = BDBStore(bdb_home)
    store.open()
    store._databases().entities.put(encoding.CLEAN_KEY, b"not eight bytes")
    store._marks_complete = False  # keep the damaged marker at close
    store.close()
    with pytest.raises(StoreError, match="clean-shutdown marker"):
        open_and_recover(bdb_home)
