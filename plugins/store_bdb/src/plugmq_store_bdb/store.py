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

Replicated mode (``replication=ReplicationSettings(...)``, driven by an HA plugin such as
``ha_zk``): :meth:`BDBStore.open` opens the environment for Berkeley DB's Replication Manager
but no database; the HA plugin then calls :meth:`BDBStore.start_replica` (join the group as a
client and receive the master's log) or :meth:`BDBStore.start_master` (become the group's
master: the databases open and the broker recovers from them). A master's :meth:`BDBStore.apply`
raises :class:`plugmq.store.NotReplicated` when a quorum did not acknowledge the batch. Every
promotion counts as after an unclean stop (delivery marks are written without waiting for the
replicas), so recovered messages are redelivered. Without ``replication`` nothing of this runs.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import structlog
from berkeleydb import db

from plugmq.store import NotReplicated, StoreError
from plugmq.store.records import MessageEnqueued, Record
from plugmq_store_bdb import encoding, environment, reader, upgrade
from plugmq_store_bdb.environment import Databases, DirectoryLock
from plugmq_store_bdb.replication import REP_FLAGS, ReplicationSettings, Replicator
from plugmq_store_bdb.writer import BatchWriter

log = structlog.get_logger("plugmq.store_bdb")

SYNC_POLICIES = ("commit", "nosync")
#: "flock": the store locks ``LOCK`` itself; "external": an HA plugin excludes other writers.
LOCK_POLICIES = ("flock", "external")
#: A checkpoint is attempted after this many batches (it only runs if enough log was written).
CHECKPOINT_EVERY = 256
#: ... and runs when this many kilobytes of log were written since the last one.
CHECKPOINT_KBYTES = 8 * 1024
_DEADLOCK_RETRIES = 20
#: Errors of a replicated environment that mean "not now", never damage (Berkeley DB's docs:
#: abort and retry the transaction; a role change is in progress; reopen the handle).
TRANSIENT = (db.DBLockDeadlockError, db.DBRepLockoutError, db.DBRepHandleDeadError)
#: How long a promotion retries opening the databases through TRANSIENT errors.
PROMOTION_RETRY_SECONDS = 10.0


class MastershipLost(StoreError):
    """Replication took the master role away while the broker was promoting (DUPMASTER: the
    HA plugin elected another master meanwhile). Not damage: the HA plugin gives up this
    mastership and the store rejoins as a replica."""


class BDBStore:
    """A :class:`plugmq.store.Store` kept in a Berkeley DB environment in ``home``."""

    name = "bdb"
    durable = True

    def __init__(
        self,
        home: Path,
        *,
        sync: str = "commit",
        cache_mb: int = 64,
        lock: str = "flock",
        replication: ReplicationSettings | None = None,
    ) -> None:
        if sync not in SYNC_POLICIES:
            raise ValueError(f"sync must be one of {SYNC_POLICIES}, not {sync!r}")
        if lock not in LOCK_POLICIES:
            raise ValueError(f"lock must be one of {LOCK_POLICIES}, not {lock!r}")
        self.home = Path(home)
        self.sync = sync
        self.cache_mb = cache_mb
        #: "external": an HA plugin guarantees one writer (see :meth:`close`); no flock.
        self.external_lock = lock == "external"
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
        #: Berkeley DB replication, when an HA plugin drives this store (else None).
        self.replicator = Replicator(replication) if replication is not None else None

    # --- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        """Lock, open and recover the environment. Raises :class:`StoreError` clearly."""
        if self._env is not None:
            return
        environment.prepare_directory(self.home)
        if not self.external_lock:
            self._lock.acquire()
        if self.replicator is not None:
            self._open_replicated(self.replicator)
            return
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

    def _open_replicated(self, replicator: Replicator) -> None:
        """Open the environment for replication; databases wait for :meth:`start_master`."""
        try:
            self._env = environment.open_environment(
                self.home,
                self.cache_mb,
                nosync=self.sync == "nosync",
                configure=replicator.configure,
                extra_flags=REP_FLAGS,
            )
        except BaseException:
            self.close()
            raise
        log.info("bdb.opened", path=str(self.home), sync=self.sync, replicated=True)

    # --- replication (driven by an HA plugin) --------------------------------------------------

    def start_replica(self, give_up_at: float) -> None:
        """Join the group as a client: blocks until the master accepted us or ``give_up_at``
        (``time.monotonic()``) passed (then ``StoreError``). Catching up continues after."""
        replicator = self._replication()
        try:
            replicator.start_client(self._environment(), give_up_at)
        except db.DBError as error:
            raise StoreError(
                f"cannot join the replication group from {self.home}: {environment.describe(error)}"
            ) from None

    def add_replication_peers(self, peers: tuple[tuple[str, int], ...]) -> None:
        """Tell replication about sites learnt after open (see :meth:`Replicator.add_peers`)."""
        try:
            self._replication().add_peers(self._environment(), peers)
        except db.DBError as error:
            raise StoreError(
                f"cannot add replication peers to {self.home}: {environment.describe(error)}"
            ) from None

    def start_master(self) -> None:
        """Become the group's master and open the databases (the broker recovers next).

        Berkeley DB's own threads still finish the role change while the databases open: a
        lock conflict with them (``DB_LOCK_DEADLOCK``), the role change's lockout
        (``DB_REP_LOCKOUT``) or a handle invalidated by it (``DB_REP_HANDLE_DEAD``) is a
        moment to wait out, per Berkeley DB's documentation: close what was opened, retry.
        Only other errors mean a damaged store.
        """
        replicator = self._replication()
        env = self._environment()
        deadline = time.monotonic() + PROMOTION_RETRY_SECONDS
        started = False
        try:
            while True:
                try:
                    if not started:  # repmgr_start itself may meet the lockout
                        replicator.start_master(env)
                        started = True
                    self._dbs = environment.open_databases(env, self.home, retryable=TRANSIENT)
                    self._check_format()
                    break
                except TRANSIENT as error:
                    self._close_databases()
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            f"the Berkeley DB store in {self.home} could not open as master "
                            f"within {PROMOTION_RETRY_SECONDS:g} s: {environment.describe(error)}"
                        ) from None
                    time.sleep(0.05)
        except db.DBError as error:
            self._close_databases()
            raise environment.corrupt(self.home, environment.describe(error)) from None
        except encoding.EncodingError as error:
            self._close_databases()
            raise environment.corrupt(self.home, str(error)) from None
        # Replicas get delivery marks without waiting for them: count this as unclean.
        self._redelivered_below = math.inf
        self._marks_complete = False

    def reclaim_master(self) -> None:
        """Be the replication master again after Berkeley DB demoted us (DUPMASTER); a role
        change still in progress (lockout, deadlock) is left for the next call."""
        try:
            self._replication().start_master(self._environment())
        except TRANSIENT as error:
            log.info("bdb.reclaim_deferred", path=str(self.home), error=str(error))

    def is_replication_master(self) -> bool:
        """Is this store Berkeley DB's replication master right now (False when closed)?"""
        if self._env is None:
            return False
        return self._replication().is_master(self._env)

    def restart_replication(self) -> None:
        """Drop a mastership that never served: close databases and environment (repmgr stops,
        its listener closes) and open the environment again, ready to join as a replica.

        For an HA plugin whose election was lost between :meth:`start_master` and the
        broker's promotion: the broker did not fence (it was not serving), and a store left
        as Berkeley DB master would fight the next master (DUPMASTER) and keep handles that
        replication invalidates. Nothing writes to the store at that point.
        """
        self.close()
        self.open()

    def _close_databases(self) -> None:
        if self._dbs is not None:
            for database in self._dbs.all():
                with contextlib.suppress(db.DBError):
                    database.close(db.DB_NOSYNC)
            self._dbs = None

    def position(self) -> tuple[int, int] | None:
        """The end of this site's log (identical LSNs on every site of a group); None while
        a replica's sync locks it out."""
        return Replicator.position(self._environment())

    def replication_sites(self) -> list[dict[str, object]]:
        """The other sites of the group and whether repmgr is connected to each."""
        try:
            return Replicator.sites(self._environment())
        except db.DBError:
            return []

    def _replication(self) -> Replicator:
        if self.replicator is None:
            raise StoreError(f"the Berkeley DB store in {self.home} is not replicated")
        return self.replicator

    def close(self) -> None:
        """Leave the clean-shutdown marker, checkpoint, close everything, release the lock.

        With an external lock the broker closing may already have lost the right to write
        (a standby took over and recovered the same files), so close writes nothing: no
        clean-shutdown marker (the next opener flags every message redelivered, which is
        always correct), no checkpoint, no flush of cached pages (``DB_NOSYNC``). Every
        committed transaction is in the log already; the next opener's recovery replays what
        was not checkpointed.
        """
        close_flags = db.DB_NOSYNC if self.external_lock else 0
        if self._dbs is not None and self._marks_complete and not self.external_lock:
            self._leave_clean_marker()
        self._marks_complete = False
        if self._dbs is not None:
            for database in self._dbs.all():
                with contextlib.suppress(db.DBError):
                    database.close(close_flags)
            self._dbs = None
        if self._env is not None:
            if not self.external_lock:
                with contextlib.suppress(db.DBError):
                    self._env.txn_checkpoint(0, 0, db.DB_FORCE)
            with contextlib.suppress(db.DBError):
                self._env.close()
            self._env = None
            log.info("bdb.closed", path=str(self.home))
        if self.replicator is not None:
            self.replicator.role = "none"  # a closed environment has no replication role
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
            if self._lost_mastership(error):
                raise MastershipLost(
                    f"the Berkeley DB store in {self.home} stopped being replication master "
                    f"during recovery ({environment.describe(error)}): another master appeared"
                ) from None
            raise environment.corrupt(self.home, environment.describe(error)) from None
        # Every message stored now was seen: messages stored later have higher ids (the broker
        # numbers on from the highest recovered), so they are judged by their own flags.
        self._redelivered_below = min(self._redelivered_below, highest + 1)
        self._marks_complete = self.replicator is None
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
        replicator = self.replicator
        if replicator is not None:
            replicator.arm()
        for _ in range(_DEADLOCK_RETRIES):
            try:
                self._apply_once(records)
                break
            except db.DBLockDeadlockError:
                continue
        else:
            if replicator is not None:
                # Replication's own threads hold the locks during a role change.
                raise NotReplicated("Berkeley DB kept deadlocking during a role change")
            raise StoreError(f"the Berkeley DB store in {self.home} kept deadlocking")
        self._marks_complete = marks_complete
        self._batches += 1
        if self._batches % CHECKPOINT_EVERY == 0:
            self._checkpoint()
        if replicator is not None and replicator.take_perm_failure():
            raise NotReplicated(
                "a quorum of the replication group did not acknowledge the batch "
                f"within {replicator.settings.ack_timeout} s"
            )

    def _apply_once(self, records: Sequence[Record]) -> None:
        txn = self._begin()
        try:
            writer = BatchWriter(self._databases(), txn)
            for record in records:
                writer.apply(record)
        except db.DBLockDeadlockError:
            txn.abort()
            raise
        except (db.DBError, MemoryError) as error:
            # MemoryError: Berkeley DB's ENOMEM, e.g. a lock table too small for the batch
            with contextlib.suppress(db.DBError):
                txn.abort()
            if self._lost_mastership(error):
                raise NotReplicated(
                    "this site is no longer Berkeley DB's replication master "
                    f"({environment.describe(error)}); not written"
                ) from None
            raise StoreError(
                f"cannot write to the Berkeley DB store in {self.home}: "
                f"{environment.describe(error)} (the batch was not applied)"
            ) from None
        except BaseException:
            txn.abort()
            raise
        self._commit(txn)

    def _begin(self, flags: int = 0) -> db.DBTxn:
        """A write transaction; NotReplicated when replication took the master role away."""
        try:
            return self._environment().txn_begin(flags=flags)
        except db.DBError as error:
            if self._lost_mastership(error):
                raise NotReplicated(
                    f"no longer replication master ({environment.describe(error)}); not written"
                ) from None
            raise StoreError(
                f"cannot write to the Berkeley DB store in {self.home}: "
                f"{environment.describe(error)}"
            ) from None

    def _lost_mastership(self, error: BaseException) -> bool:
        """Did a write fail because replication took the master role away (not damage)?

        Berkeley DB demotes a master that meets another (DUPMASTER, a paused old master
        resuming) before the event reaches us; its writes then fail as "read-only database"
        (EACCES), with a lockout or a dead handle. The HA plugin decides who is master; the
        batch is nacked, never confirmed, and the broker stays up.
        """
        replicator = self.replicator
        if replicator is None:
            return False
        if replicator.demoted.is_set() or isinstance(error, (*TRANSIENT, db.DBRepUnavailError)):
            return True
        return isinstance(error, db.DBAccessError) and not replicator.is_master(self._environment())

    def _commit(self, txn: db.DBTxn, flags: int = 0) -> None:
        try:
            txn.commit(flags)
        except db.DBError as error:
            if self._lost_mastership(error):
                raise NotReplicated(
                    f"commit refused: no longer replication master ({environment.describe(error)})"
                ) from None
            raise StoreError(
                f"cannot commit to the Berkeley DB store in {self.home}: "
                f"{environment.describe(error)}"
            ) from None

    def mark_delivered(self, vhost: str, queue: str, message_ids: Sequence[int]) -> None:
        """Set the delivered flag of these messages; the log is written but not fsynced."""
        messages = self._databases().messages
        try:
            txn = self._begin(db.DB_TXN_WRITE_NOSYNC)
        except NotReplicated:
            self._marks_complete = False
            return
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
            if self._lost_mastership(error):
                return  # best effort: a demoted master's marks wait for the next master's
            raise StoreError(
                f"cannot write to the Berkeley DB store in {self.home}: "
                f"{environment.describe(error)}"
            ) from None
        except BaseException:
            txn.abort()
            self._marks_complete = False
            raise
        try:
            self._commit(txn, db.DB_TXN_WRITE_NOSYNC)
        except NotReplicated:
            self._marks_complete = False

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
