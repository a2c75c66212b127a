"""Inspect a stopped broker's Berkeley DB store: ``python -m plugmq_store_bdb.inspect DATA_DIR``.

Opens the store exactly as the broker does (so it runs recovery and refuses while a broker
holds the lock), prints the entry counts of each database and, with ``--records``, every
record recovery would hand to the broker (message bodies shortened).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import structlog

from plugmq.store import StoreError
from plugmq.store.records import MessageEnqueued, Record
from plugmq_store_bdb.store import BDBStore


def describe(record: Record) -> str:
    """One line for a record; bodies and headers are shown by size only."""
    if isinstance(record, MessageEnqueued):
        return (
            f"MessageEnqueued vhost={record.vhost!r} queue={record.queue!r} "
            f"id={record.message_id} exchange={record.exchange!r} "
            f"routing_key={record.routing_key!r} header={len(record.header)}B "
            f"body={len(record.body)}B redelivered={record.redelivered} "
            f"enqueued_at={record.enqueued_at}"
        )
    return repr(record)


def main(argv: list[str] | None = None) -> int:
    """Print the store's counts (and records); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m plugmq_store_bdb.inspect", description=__doc__)
    parser.add_argument("data_dir", type=Path, help="the broker's --data-dir")
    parser.add_argument("--records", action="store_true", help="print every recovered record")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    store = BDBStore(args.data_dir / "bdb")
    try:
        store.open()
        for name, count in store.stats().items():
            print(f"{name}: {count}")
        if args.records:
            for record in store.recover(lambda done, total: None):
                print(describe(record))
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
