"""kill -9 at a random instant: every batch reported committed survives, batches are atomic.

A writer subprocess opens the store with ``sync="commit"``, applies deterministic batches
and prints each batch number after ``apply`` returns. The test kills it with SIGKILL at a
random moment (sometimes during open or recovery), reopens the store, and checks that it holds
exactly the first N or N+1 batches, where N batches were reported: nothing reported is lost
and no batch is half there, and every message comes back redelivered (the stop was unclean).
The next writer continues in the same directory.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

from plugmq.store.records import MessageEnqueued, MessageRemoved, QueueDeclared, Record
from plugmq.store.state import StoredState
from plugmq_store_bdb import BDBStore

ITERATIONS = 8
MAX_BATCHES = 100_000

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from store.bdb.test_durability import batch_records
    from plugmq_store_bdb import BDBStore
    store = BDBStore(Path(sys.argv[1]), sync="commit")
    store.open()
    list(store.recover(lambda done, total: None))
    start, stop = int(sys.argv[2]), int(sys.argv[3])
    for number in range(start, stop):
        store.apply(batch_records(number))
        sys.stdout.write(f"committed {number}\\n")
        sys.stdout.flush()
    """
)


def batch_records(number: int) -> list[Record]:
    """Batch ``number``: a few messages on two queues, and acks of an earlier batch's messages."""
    if number == 0:
        return [QueueDeclared("/", "a"), QueueDeclared("/", "b")]
    records: list[Record] = []
    for index in range(5):
        message_id = number * 10 + index
        queue = "a" if index % 2 else "b"
        records.append(MessageEnqueued("/", queue, message_id, "", queue, b"h", b"x" * 50))
    shared = number % 3 == 0
    if shared:  # message ``number * 10`` is on queue b, and now on a too (body stored once)
        records.append(MessageEnqueued("/", "a", number * 10, "", "b", b"h", b"x" * 50))
    if number > 2 and not shared:
        earlier = (number - 2) * 10
        records += [MessageRemoved("/", "b", earlier), MessageRemoved("/", "a", earlier + 1)]
    return records


def state_after(batches: int, canonical) -> dict:
    """The canonical state after the first ``batches`` batches, recovered after a kill -9.

    The writer never closes cleanly, so every message comes back with ``redelivered=True``.
    """
    state = StoredState()
    for number in range(batches):
        for record in batch_records(number):
            state.apply(record)
    return canonical(
        replace(record, redelivered=True) if isinstance(record, MessageEnqueued) else record
        for record in state.records()
    )


def reported_batches(path: Path) -> int:
    """How many batches the writer reported committed (complete lines only)."""
    count = 0
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("committed ") and line.endswith("\n"):
            count = int(line.split()[1]) + 1
    return count


def run_and_kill(home: Path, start: int, out: Path, delay: float) -> int:
    """Start a writer at batch ``start``, SIGKILL it after ``delay`` s; batches it reported."""
    tests_dir = Path(__file__).resolve().parents[2]
    with out.open("w") as stdout:
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(home), str(start), str(start + MAX_BATCHES)],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            cwd=tests_dir,
        )
        try:
            time.sleep(delay)
        finally:
            writer.kill()
            writer.wait(timeout=10)
    reported = reported_batches(out)
    return reported if reported else start


def test_reported_batches_survive_kill_9(bdb_home: Path, tmp_path: Path, canonical, recover):
    rng = random.Random()
    committed = 0
    killed_while_writing = 0
    for iteration in range(ITERATIONS):
        out = tmp_path / f"writer-{iteration}.out"
        # even iterations: any instant, often during start-up and recovery; odd: mid-writing
        delay = rng.uniform(0.05, 0.6) if iteration % 2 == 0 else rng.uniform(0.8, 1.5)
        reported = run_and_kill(bdb_home, committed, out, delay)
        killed_while_writing += reported > committed
        store = BDBStore(bdb_home)
        store.open()
        try:
            recovered = canonical(recover(store))
        finally:
            store.close()
        if recovered == state_after(reported, canonical):
            committed = reported
        else:
            assert recovered == state_after(reported + 1, canonical), (
                f"iteration {iteration}: store is neither batch {reported} nor {reported + 1}"
            )
            committed = reported + 1
        print(f"iteration {iteration}: delay {delay:.2f}s, {committed} batches committed")
    assert killed_while_writing >= 2, "the writer rarely got to write"
    assert committed > 0
