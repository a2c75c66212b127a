"""Upgrading a store written by an earlier format, in place, when it is opened.

Formats 1 and 2 differ from format 3 in two ways. Their message entries carry no enqueue time;
their flag bytes (0 or 1, no :data:`~plugmq_store_bdb.encoding.TIMED_BIT`) say so, so they
stay as they are and are read as "enqueue time unknown". Their binding keys hold the
arguments as ``repr(sorted(arguments.items()))``, which is not the core's binding identity
(nested tables in another order made another key): every binding is re-keyed. Bindings are
few, so this is one short transaction, committed together with the new format marker: a crash
during the upgrade leaves the old format, which is upgraded again at the next open.
"""

from __future__ import annotations

import structlog
from berkeleydb import db

from plugmq.store.records import BindingAdded
from plugmq_store_bdb import encoding
from plugmq_store_bdb.environment import Databases

log = structlog.get_logger("plugmq.store_bdb")


def upgrade(env: db.DBEnv, dbs: Databases, old_format: bytes) -> None:
    """Bring a store of ``old_format`` (one of ``UPGRADABLE_FORMATS``) to the current one."""
    txn = env.txn_begin()
    try:
        rekeyed = _rekey_bindings(dbs.entities, txn)
        dbs.entities.put(encoding.FORMAT_KEY, encoding.FORMAT_VALUE, txn=txn)
    except BaseException:
        txn.abort()
        raise
    txn.commit(db.DB_TXN_SYNC)
    log.info(
        "bdb.format_upgraded",
        old=old_format.decode(errors="replace"),
        new=encoding.FORMAT_VALUE.decode(),
        bindings_rekeyed=rekeyed,
    )


def _rekey_bindings(entities: db.DB, txn: db.DBTxn) -> int:
    """Store every binding under :func:`encoding.binding_key`; return how many moved."""
    moves: list[tuple[bytes, bytes, bytes]] = []
    cursor = entities.cursor(txn=txn)
    try:
        item = cursor.set_range(encoding.BINDING)
        while item is not None and item[0].startswith(encoding.BINDING):
            record = encoding.decode_entity(item[1])
            if not isinstance(record, BindingAdded):
                raise encoding.EncodingError(f"not a binding under a binding key: {record!r}")
            new_key = encoding.binding_key(record)
            if new_key != item[0]:
                moves.append((item[0], new_key, item[1]))
            item = cursor.next()
    finally:
        cursor.close()
    for old_key, new_key, value in moves:
        entities.delete(old_key, txn=txn)
        entities.put(new_key, value, txn=txn)
    return len(moves)
