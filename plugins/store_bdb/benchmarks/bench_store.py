"""Berkeley DB store benchmark: batch commit rate and recovery rate.

Run: ``uv run python plugins/store_bdb/benchmarks/bench_store.py --messages 1000000``.
Writes ``--messages`` small persistent messages over 4 durable queues in batches of
``--batch`` records, closes, reopens and recovers everything, then deletes one queue.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import structlog

from plugmq.store.records import MessageEnqueued, QueueDeclared, QueueDeleted
from plugmq_store_bdb import BDBStore

QUEUES = 4


def write(store: BDBStore, messages: int, batch: int, body: bytes) -> float:
    """Apply ``messages`` enqueues in batches; returns the seconds taken."""
    store.apply([QueueDeclared("/", f"q{i}") for i in range(QUEUES)])
    started = time.perf_counter()
    for first in range(1, messages + 1, batch):
        ids = range(first, min(messages + 1, first + batch))
        store.apply(
            [
                MessageEnqueued("/", f"q{i % QUEUES}", i, "amq.direct", "rk", b"h" * 20, body)
                for i in ids
            ]
        )
    return time.perf_counter() - started


def main() -> None:
    """Parse arguments, run, print the rates."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--body", type=int, default=100, help="body size in bytes")
    parser.add_argument("--sync", choices=["commit", "nosync"], default="nosync")
    parser.add_argument("--dir", type=Path, default=None, help="where (default: a temp dir)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    root = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        run(root / "bdb", args)
    finally:
        shutil.rmtree(root)


def run(home: Path, args: argparse.Namespace) -> None:
    """The benchmark proper."""
    store = BDBStore(home, sync=args.sync)
    store.open()
    seconds = write(store, args.messages, args.batch, b"x" * args.body)
    batches = -(-args.messages // args.batch)
    print(
        f"write: {args.messages:,} messages, {args.batch}/batch, sync={args.sync}: {seconds:.2f} s"
        f" = {args.messages / seconds:,.0f} records/s, {batches / seconds:,.0f} commits/s"
    )
    store.close()
    started = time.perf_counter()
    store.open()
    opened = time.perf_counter()
    count = sum(1 for _ in store.recover(lambda done, total: None))
    done = time.perf_counter()
    print(
        f"recover: open {opened - started:.2f} s, {count:,} records in {done - opened:.2f} s"
        f" = {count / (done - opened):,.0f} records/s (total {done - started:.2f} s)"
    )
    started = time.perf_counter()
    store.apply([QueueDeleted("/", "q0")])
    print(f"delete a queue of {args.messages // QUEUES:,}: {time.perf_counter() - started:.2f} s")
    store.close()


if __name__ == "__main__":
    main()
