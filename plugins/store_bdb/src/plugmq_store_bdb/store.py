"""The Berkeley DB store: durable queues and persistent messages that survive kill -9.

On-disk layout, all in ``<data_dir>/bdb/`` (one transactional Berkeley DB environment):

=================  ===========================================================================
``LOCK``           ``flock``-ed by the running broker; holds its pid and host name
``entities.db``    B-tree: config entries, exchanges, queues, bindings (+ format marker)
``messages.db``    B-tree: (vhost, queue, message id) -> flags, enqueue time (+ small message)
``bodies.db``      B-tree: message id -> exchange, routing key, content header, body (once)
``refs.db``        B-tree: message id -> number of queues holding a message in bodies.db
``log.*``          Berkeley DB's write-ahead log (removed automatically after checkpoints)
``__db.*``         Berkeley DB's shared regions (cache, locks); rebuilt at every open
=================  ===========================================================================

Key and value encodings are described in :mod:`plugmq_store_bdb.encoding`.

Every :meth:`BDBStore.apply` batch is one transaction, committed with an fsync of the log
(``--bdb-sync commit``) or without one (``--bdb-sync nosync``). ``mark_delivered`` uses its own
transaction that writes the log without an fsync. The environment is opened with
``DB_RECOVER`` every time, which replays or rolls back the log so the databases hold exactly
the committed transactions.

A clean :meth:`BDBStore.close` leaves a marker (:data:`encoding.CLEAN_KEY`) that
:meth:`BDBStore.open` takes away. Opening without it means the last run ended uncleanly
(kill -9, power loss): its delivery marks may be incomplete, so every message stored then is
recovered (and paged in) with ``redelivered=True``, as RabbitMQ does after a crash. The marker
carries the highest such message id still possibly stored, so a clean restart after that keeps
flagging them without rewriting their entries.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import structlog
from berkeleydb import db

from plugmq.store import StoreError
from plugmq.store.records import MessageEnqueued, Record
from plugmq_store_bdb import encoding, environment, reader, upgrade
from plugmq_store_bdb.environment import Databases, DirectoryLock
from plugmq_store_bdb.writer import BatchWriter

log = structlog.get_logger("plugmq.store_bdb")

SYNC_POLICIES = ("commit", "nosync")
#: A checkpoint is attempted after this many batches (it only runs if enough log was written).
CHECKPOINT_EVERY = 256
#: ... and runs when this many kilobytes of log were written since the last one.
CHECKPOINT_KBYTES = 8 * 1024
_DEADLOCK_RETRIES = 20


class BDBStore:
    """A :class:`plugmq.store.Store` kept in a Berkeley DB environment in ``home``."""

    name = "bdb"
    durable = True

    def __init__(self, home: Path, *, sync: str = "commit", cache_mb: int = 64) -> None:
        if sync not in SYNC_POLICIES:
            raise ValueError(f"sync must be one of {SYNC_POLICIES}, not {sync!r}")
        self.home = Path(home)
        self.sync = sync
        self.cache_mb = cache_mb
        self._lock = DirectoryLock(self.home)
        self._env: db.DBEnv | None = None
        self._dbs: Databases | None = None
        self._batches = 0
        #: Messages with ids below this are recovered as redelivered (see the module doc):
        #: infinite after an unclean stop until recovery has seen every stored message.
        self._redelivered_below: float = 0
        #: False when a delivery mark may be missing (an unclean open not yet fully recovered,
        #: a write that failed): close() then leaves no clean marker.
        self._marks_complete = False

    # --- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        """Lock, open and recover the environment. Raises :class:`StoreError` clearly."""
        if self._env is not None:
            return
        environment.prepare_directory(self.home)
        self._lock.acquire()
        try:
            self._env = environment.open_environment(
                self.home, self.cache_mb, nosync=self.sync == "nosync"
            )
            self._dbs = environment.open_databases(self._env, self.home)
            created = self._check_format()
            self._take_clean_marker(created)
            messages = reader.count_messages(self._dbs)
        except db.DBError as error:
            self.close()
            raise environment.corrupt(self.home, environment.describe(error)) from None
        except encoding.EncodingError as error:
            self.close()
            raise environment.corrupt(self.home, str(error)) from None
        except BaseException:
            self.close()
            raise
        log.info(
            "bdb.opened",
            path=str(self.home),
            sync=self.sync,
            messages=messages,
            clean=math.isfinite(self._redelivered_below),
        )

    def close(self) -> None:
        """Leave the clean-shutdown marker, checkpoint, close everything, release the lock."""
        if self._dbs is not None and self._marks_complete:
            self._leave_clean_marker()
        self._marks_complete = False
        if self._dbs is not None:
            for database in self._dbs.all():
                with contextlib.suppress(db.DBError):
                    database.close()
            self._dbs = None
        if self._env is not None:
            with contextlib.suppress(db.DBError):
                self._env.txn_checkpoint(0, 0, db.DB_FORCE)
            with contextlib.suppress(db.DBError):
                self._env.close()
            self._env = None
            log.info("bdb.closed", path=str(self.home))
        self._lock.release()

    def _check_format(self) -> bool:
        """Write the format marker into a new store (returning True); refuse another format."""
        dbs = self._databases()
        marker = dbs.entities.get(encoding.FORMAT_KEY)
        if marker is None:
            if dbs.entities.stat()["nkeys"] or dbs.messages.stat()["nkeys"]:
                raise environment.corrupt(self.home, "entities.db has no format marker")
            dbs.entities.put(encoding.FORMAT_KEY, encoding.FORMAT_VALUE)
            return True
        if marker in encoding.UPGRADABLE_FORMATS:
            upgrade.upgrade(self._environment(), dbs, marker)
        elif marker != encoding.FORMAT_VALUE:
            raise StoreError(
                f"the Berkeley DB store in {self.home} has format {marker!r}, this plugin "
                f"reads {encoding.FORMAT_VALUE!r}: use the plugmq version that wrote it"
            )
        return False

    def _take_clean_marker(self, created: bool) -> None:
        """Read and remove the clean-shutdown marker (synchronously: a crash from now on must
        find it gone); without one, every stored message counts as delivered."""
        dbs = self._databases()
        value = encoding.pack_horizon(0) if created else dbs.entities.get(encoding.CLEAN_KEY)
        self._redelivered_below = math.inf if value is None else encoding.unpack_horizon(value)
        if value is not None:
            txn = self._environment().txn_begin()
            with contextlib.suppress(db.DBNotFoundError):
                dbs.entities.delete(encoding.CLEAN_KEY, txn=txn)
            self._commit(txn, db.DB_TXN_SYNC)
        self._marks_complete = value is not None

    def _leave_clean_marker(self) -> None:
        """Write the clean-shutdown marker, synchronously (the last write before closing).

        A failure is logged, not raised: the next start then counts the stop as unclean,
        which only flags more messages as redelivered.
        """
        horizon = encoding.pack_horizon(int(self._redelivered_below))
        try:
            txn = self._environment().txn_begin()
            try:
                self._databases().entities.put(encoding.CLEAN_KEY, horizon, txn=txn)
            except BaseException:
                txn.abort()
                raise
            self._commit(txn, db.DB_TXN_SYNC)
        except (db.DBError, StoreError) as error:
            log.warning("bdb.clean_marker_failed", path=str(self.home), error=str(error))

    # --- reading -------------------------------------------------------------------------------

    def recover(self, progress: Callable[[int, int], None]) -> Iterator[Record]:
        """Yield the records that rebuild the stored state, in contract order."""
        dbs = self._databases()
        started = time.monotonic()
        try:
            yield from reader.entity_records(dbs)
            total = reader.count_messages(dbs)
            reporter = _ProgressLog(progress, self.home)
            highest = yield from reader.message_records(
                dbs, total, reporter, self._redelivered_below
            )
        except encoding.EncodingError as error:
            raise environment.corrupt(self.home, str(error)) from None
        except db.DBError as error:
            raise environment.corrupt(self.home, environment.describe(error)) from None
        # Every message stored now was seen: messages stored later have higher ids (the broker
        # numbers on from the highest recovered), so they are judged by their own flags.
        self._redelivered_below = min(self._redelivered_below, highest + 1)
        self._marks_complete = True
        log.info(
            "bdb.recovered",
            path=str(self.home),
            messages=reporter.done,
            redelivered_below=self._redelivered_below,
            seconds=round(time.monotonic() - started, 3),
        )

    def read_queue(
        self, vhost: str, queue: str, after_message_id: int, limit: int
    ) -> list[MessageEnqueued]:
        """Page in up to ``limit`` messages of a queue with ids above ``after_message_id``."""
        return reader.queue_messages(
            self._databases(), vhost, queue, after_message_id, limit, self._redelivered_below
        )

    def stats(self) -> dict[str, int]:
        """Entry counts of each database (walks every page: for tests and inspection)."""
        dbs = self._databases()
        return {
            "entities": max(0, int(dbs.entities.stat()["nkeys"]) - 1),
            "messages": int(dbs.messages.stat()["nkeys"]),
            "bodies": int(dbs.bodies.stat()["nkeys"]),
            "refs": int(dbs.refs.stat()["nkeys"]),
        }

    # --- writing -------------------------------------------------------------------------------

    def apply(self, records: Sequence[Record]) -> None:
        """Apply the batch in one transaction and commit it (retrying on deadlock)."""
        if not records:
            return
        marks_complete, self._marks_complete = self._marks_complete, False  # until committed
        for _ in range(_DEADLOCK_RETRIES):
            try:
                self._apply_once(records)
                break
            except db.DBLockDeadlockError:
                continue
        else:
            raise StoreError(f"the Berkeley DB store in {self.home} kept deadlocking")
        self._marks_complete = marks_complete
        self._batches += 1
        if self._batches % CHECKPOINT_EVERY == 0:
            self._checkpoint()

    def _apply_once(self, records: Sequence[Record]) -> None:
        env = self._environment()
        txn = env.txn_begin()
        try:
            writer = BatchWriter(self._databases(), txn)
            for record in records:
                writer.apply(record)
        except db.DBLockDeadlockError:
            txn.abort()
            raise
        except (db.DBError, MemoryError) as error:
            # MemoryError: Berkeley DB's ENOMEM, e.g. a lock table too small for the batch
            txn.abort()
            raise StoreError(
                f"cannot write to the Berkeley DB store in {self.home}: "
                f"{environment.describe(error)} (the batch was not applied)"
            ) from None
        except BaseException:
            txn.abort()
            raise
        self._commit(txn)

    def _commit(self, txn: db.DBTxn, flags: int = 0) -> None:
        try:
            txn.commit(flags)
        except db.DBError as error:
            raise StoreError(
                f"cannot commit to the Berkeley DB store in {self.home}: "
                f"{environment.describe(error)}"
            ) from None

    def mark_delivered(self, vhost: str, queue: str, message_ids: Sequence[int]) -> None:
        """Set the delivered flag of these messages; the log is written but not fsynced."""
        messages = self._databases().messages
        txn = self._environment().txn_begin(flags=db.DB_TXN_WRITE_NOSYNC)
        try:
            for message_id in message_ids:
                key = encoding.message_key(vhost, queue, message_id)
                value = messages.get(key, txn=txn)
                marked = None if value is None else encoding.mark_value_delivered(value)
                if marked is not None:
                    messages.put(key, marked, txn=txn)
        except db.DBLockDeadlockError:
            txn.abort()
            # Best effort, but the next start must not trust the flags: not a clean close.
            self._marks_complete = False
            return
        except db.DBError as error:
            txn.abort()
            self._marks_complete = False
            raise StoreError(
                f"cannot write to the Berkeley DB store in {self.home}: "
                f"{environment.describe(error)}"
            ) from None
        except BaseException:
            txn.abort()
            self._marks_complete = False
            raise
        self._commit(txn, db.DB_TXN_WRITE_NOSYNC)

    def _checkpoint(self) -> None:
        """Checkpoint if enough log was written; old log files are then removed."""
        started = time.monotonic()
        try:
            self._environment().txn_checkpoint(CHECKPOINT_KBYTES, 0)
        except db.DBError as error:
            log.warning("bdb.checkpoint_failed", path=str(self.home), error=str(error))
            return
        log.debug("bdb.checkpoint", seconds=round(time.monotonic() - started, 3))

    # --- helpers -------------------------------------------------------------------------------

    def _environment(self) -> db.DBEnv:
        if self._env is None:
            raise StoreError(f"the Berkeley DB store in {self.home} is not open")
        return self._env

    def _databases(self) -> Databases:
        if self._dbs is None:
            raise StoreError(f"the Berkeley DB store in {self.home} is not open")
        return self._dbs


class _ProgressLog:
    """Forwards ``progress(done, total)`` and remembers how far recovery got.

    The core logs progress (rate-limited); the store only counts, so events are not doubled.
    """

    def __init__(self, progress: Callable[[int, int], None], home: Path) -> None:
        self._progress = progress
        self._home = home
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        self._progress(done, total)
