"""The PostgreSQL store: durable state in tables that several brokers of a group share.

Every :meth:`PGStore.apply` batch is one transaction: the lock-row check, the batch's
statements (pipelined, see :mod:`.writer`), and COMMIT with PostgreSQL's default
``synchronous_commit = on``, so :meth:`apply` returns only once the batch is in the
database's WAL on disk and the broker confirms only then. A broker killed with -9 loses at most
batches it never confirmed.

**Fencing.** Under ``--ha pg`` each transaction first reads the lock row ``FOR KEY SHARE`` and
refuses to go on unless the row still carries this master's epoch. A takeover locks the row
``FOR UPDATE`` (which waits for those transactions) before it raises the epoch, so every batch
commits either wholly before the new master recovers, or not at all: a deposed master's late
transactions are refused by the database itself (:class:`NotReplicated`: its publishes are
nacked, and the strategy fences). A standalone broker (no ``--ha pg``) holds an exclusive
session advisory lock on the schema instead; an HA master holds a shared one, so a standalone
broker and an HA group never write the same schema.

**Outages.** A lost connection is retried with backoff (0.05 s doubling to 2 s), logged as
``pg_unreachable`` / ``pg_reachable``, with publishers blocked meanwhile; no confirm is sent
for a batch until it commits. A batch whose COMMIT outcome is unknown is applied again (every
statement is idempotent). An HA master gives up when its lease ends; a standalone broker after
``--pg-retry-seconds`` (then it stops with a clear error rather than hold publishers forever).
Wrong credentials or a missing database are clear errors at once, not retried.

**Clean shutdown.** A clean :meth:`close` leaves a ``clean`` row in ``plugmq_meta`` that
:meth:`open` takes away, with the same meaning as store_bdb's marker: without it every stored
message is recovered with ``redelivered=True``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import structlog

from plugmq.store import NotReplicated, StoreError
from plugmq.store.records import (
    BindingAdded,
    ConfigSet,
    ExchangeDeclared,
    MessageEnqueued,
    QueueDeclared,
    Record,
)
from plugmq_store_pg import schema
from plugmq_store_pg.codec import DecodeError, load, name, text
from plugmq_store_pg.link import Link
from plugmq_store_pg.session import LOST, Database, first_line
from plugmq_store_pg.writer import execute, statements_of

log = structlog.get_logger("plugmq.store_pg")

#: Rows fetched per round trip while recovering or paging.
FETCH_ROWS = 2000
#: First and longest pause between reconnection attempts.
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
#: Advisory lock class of "who writes this schema" (the object id is the schema's hash).
LOCK_CLASS = 0x504D51

MESSAGE_COLUMNS = (
    "message_id, delivered, enqueued_at, exchange, routing_key, header, body, vhost, queue"
)


class Deposed(Exception):
    """The lock row carries another epoch: this broker is no longer the group's master."""


class PGStore:
    """A :class:`plugmq.store.Store` in a PostgreSQL schema."""

    name = "pg"
    durable = True

    def __init__(
        self,
        dsn: str,
        *,
        schema_name: str = "plugmq",
        group: str = "plugmq",
        retry_seconds: float = 60.0,
        link: Link | None = None,
        idle_timeout: float = 0.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema_name
        self.group = group
        self.retry_seconds = retry_seconds
        self.db = Database(dsn, schema_name, idle_timeout)
        self.link = link or Link()
        self._conn: psycopg.Connection | None = None
        self._redelivered_below: float = 0
        self._marks_complete = False
        self._open = False

    # --- connections ---------------------------------------------------------------------------

    def where(self) -> str:
        """``schema 'x' on host:port/db`` for messages."""
        return self.db.where()

    def connect(self) -> psycopg.Connection:
        """A new session on the schema (see :meth:`Database.connect`)."""
        return self.db.connect()

    def _session(self) -> psycopg.Connection:
        """The open session, reconnecting (and re-taking the writer lock) when it broke."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            conn = self.connect()
            try:
                self._take_writer_lock(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _take_writer_lock(self, conn: psycopg.Connection) -> None:
        """Exclusive advisory lock (standalone) or shared (HA master); refuse if held."""
        function = "pg_try_advisory_lock_shared" if self.link.guard else "pg_try_advisory_lock"
        key = (LOCK_CLASS, f"plugmq-writer:{self.schema}")
        row = conn.execute(f"SELECT {function}(%s, hashtext(%s) & 2147483647)", key).fetchone()
        if row and row[0]:
            return
        holders = conn.execute(
            "SELECT a.application_name, l.mode FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.classid = %s "
            "AND l.objid = (hashtext(%s) & 2147483647)::oid AND l.granted",
            key,
        ).fetchall()
        who = ", ".join(f"{app} ({mode})" for app, mode in holders) or "another session"
        hint = (
            "a standalone broker and an HA group cannot share one schema"
            if self.link.guard or any(mode == "ShareLock" for _, mode in holders)
            else "only one standalone broker may use a schema (use --ha pg for master/slave)"
        )
        raise StoreError(f"PostgreSQL {self.where()} is in use by {who}: {hint}")

    # --- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, create or upgrade the schema, take the clean-shutdown marker."""
        if self._open:
            return
        prepared = self._with_retry(self._prepare, "open")
        self._open = True
        log.info(
            "pg.opened",
            where=self.where(),
            version=prepared.version,
            created=prepared.created,
            clean=math.isfinite(self._redelivered_below),
            epoch=self.link.guard.epoch if self.link.guard else None,
        )

    def _prepare(self) -> schema.Prepared:
        conn = self._session()
        prepared = schema.prepare(conn, self.schema, self.group, _plugin_version())
        with conn.transaction():
            self._check_epoch(conn)
            row = conn.execute("DELETE FROM plugmq_meta WHERE key = 'clean' RETURNING value")
            found = row.fetchone()
        if prepared.created:
            self._redelivered_below = 0
            self._marks_complete = True
        else:
            self._redelivered_below = math.inf if found is None else found[0]
            self._marks_complete = found is not None
        return prepared

    def close(self) -> None:
        """Leave the clean marker (when every mark is written), then disconnect."""
        conn, self._conn = self._conn, None
        was_open, self._open = self._open, False
        if conn is None:
            return
        try:
            if was_open and self._marks_complete and not conn.broken:
                horizon = 0 if math.isinf(self._redelivered_below) else self._redelivered_below
                with conn.transaction():
                    self._check_epoch(conn)
                    conn.execute(
                        "INSERT INTO plugmq_meta VALUES ('clean', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        (int(horizon),),
                    )
        except (psycopg.Error, Deposed) as error:
            # The next start then counts this stop as unclean: more redelivered flags only.
            log.warning("pg.clean_marker_failed", where=self.where(), error=str(error))
        finally:
            self._marks_complete = False
            conn.close()
            log.info("pg.closed", where=self.where())

    # --- reading -------------------------------------------------------------------------------

    def recover(self, progress: Callable[[int, int], None]) -> Iterator[Record]:
        """Config, exchanges, queues, bindings, then each queue's messages oldest first."""
        conn = self._session()
        started = time.monotonic()
        try:
            with conn.transaction():
                yield from self._entities(conn)
                total = conn.execute("SELECT count(*) FROM plugmq_messages").fetchone()[0]
                done, highest = 0, -1
                with conn.cursor(name="plugmq_recover") as cursor:
                    cursor.itersize = FETCH_ROWS
                    cursor.execute(
                        f"SELECT {MESSAGE_COLUMNS} FROM plugmq_messages "
                        "ORDER BY vhost, queue, message_id"
                    )
                    for row in cursor:
                        yield self._message(row)
                        highest = max(highest, row[0])
                        done += 1
                        if done % 10_000 == 0:
                            progress(done, total)
                progress(done, max(done, total))
        except DecodeError as error:
            raise StoreError(f"PostgreSQL {self.where()} holds a bad value: {error}") from None
        except psycopg.Error as error:
            raise StoreError(f"cannot read PostgreSQL {self.where()}: {error}") from None
        self._redelivered_below = min(self._redelivered_below, highest + 1)
        self._marks_complete = True
        log.info(
            "pg.recovered",
            where=self.where(),
            messages=done,
            seconds=round(time.monotonic() - started, 3),
        )

    def _entities(self, conn: psycopg.Connection) -> Iterator[Record]:
        for namespace, key, value in conn.execute("SELECT * FROM plugmq_config ORDER BY 1, 2"):
            yield ConfigSet(text(namespace), text(key), load(value))
        for vhost, exchange, kind, auto_delete, internal, arguments in conn.execute(
            "SELECT * FROM plugmq_exchanges ORDER BY 1, 2"
        ):
            yield ExchangeDeclared(
                text(vhost), text(exchange), kind, auto_delete, internal, load(arguments)
            )
        for vhost, queue, auto_delete, arguments in conn.execute(
            "SELECT * FROM plugmq_queues ORDER BY 1, 2"
        ):
            yield QueueDeclared(text(vhost), text(queue), auto_delete, load(arguments))
        for vhost, source, destination, kind, routing_key, _, arguments in conn.execute(
            "SELECT * FROM plugmq_bindings ORDER BY 1, 2, 3, 4, 5, 6"
        ):
            yield BindingAdded(
                text(vhost), text(source), text(destination), kind, text(routing_key),
                load(arguments),
            )  # fmt: skip

    def _message(self, row: tuple[Any, ...]) -> MessageEnqueued:
        message_id, delivered, enqueued_at, exchange, routing_key, header, body, vhost, queue = row
        return MessageEnqueued(
            text(vhost),
            text(queue),
            message_id,
            text(exchange),
            text(routing_key),
            bytes(header),
            bytes(body),
            delivered or message_id < self._redelivered_below,
            enqueued_at,
        )

    def read_queue(
        self, vhost: str, queue: str, after_message_id: int, limit: int
    ) -> list[MessageEnqueued]:
        """Page in up to ``limit`` messages of a queue with ids above ``after_message_id``."""

        def read() -> list[MessageEnqueued]:
            conn = self._session()
            with conn.transaction():
                rows = conn.execute(
                    f"SELECT {MESSAGE_COLUMNS} FROM plugmq_messages "
                    "WHERE vhost = %s AND queue = %s AND message_id > %s "
                    "ORDER BY message_id LIMIT %s",
                    (name(vhost), name(queue), after_message_id, limit),
                ).fetchall()
            return [self._message(row) for row in rows]

        return self._with_retry(read, "read")

    # --- writing -------------------------------------------------------------------------------

    def apply(self, records: Sequence[Record]) -> None:
        """Apply the batch in one transaction, committed before returning."""
        if not records:
            return
        statements = statements_of(records)
        marks, self._marks_complete = self._marks_complete, False  # until committed

        def write() -> None:
            conn = self._session()
            with conn.transaction(), conn.cursor() as cursor:
                self._check_epoch(conn)
                execute(cursor, statements)

        self._with_retry(write, "write")
        self._marks_complete = marks

    def mark_delivered(self, vhost: str, queue: str, message_ids: Sequence[int]) -> None:
        """Set the delivered flags; committed without waiting for the WAL flush."""
        try:
            conn = self._session()
            with conn.transaction():
                self._check_epoch(conn)
                conn.execute("SET LOCAL synchronous_commit TO off")
                conn.execute(
                    "UPDATE plugmq_messages SET delivered = true WHERE vhost = %s "
                    "AND queue = %s AND message_id = ANY(%s) AND NOT delivered",
                    (name(vhost), name(queue), list(message_ids)),
                )
        except (psycopg.Error, Deposed, StoreError) as error:
            # Best effort; the next start must not trust the flags: not a clean close.
            self._marks_complete = False
            log.warning("pg.mark_delivered_failed", where=self.where(), error=str(error))

    def _check_epoch(self, conn: psycopg.Connection) -> None:
        """Under ``--ha pg``: the lock row must carry our epoch, and stays so until COMMIT."""
        guard = self.link.guard
        if guard is None:
            return
        row = conn.execute("SELECT epoch FROM plugmq_lock FOR KEY SHARE").fetchone()
        if row is None or row[0] != guard.epoch:
            raise Deposed(
                f"the lock row of {self.where()} carries epoch {row[0] if row else None}, "
                f"this master holds epoch {guard.epoch}"
            )

    def _with_retry(self, work: Callable[[], Any], what: str) -> Any:
        """Run ``work``; retry through lost connections (see the module docstring)."""
        deadline = time.monotonic() + self.retry_seconds
        backoff = BACKOFF_FIRST
        while True:
            try:
                result = work()
            except Deposed as error:
                self._marks_complete = False
                if self.link.guard is not None:
                    self.link.guard.deposed.append(str(error))
                raise NotReplicated(f"refused by PostgreSQL: {error}") from None
            except LOST as error:
                fatal = self.db.classify(error)
                if isinstance(fatal, StoreError):
                    raise fatal from None
                reason = first_line(error)
                self._drop_session()
                self._outage(what, reason, backoff)
                guard = self.link.guard
                if guard is not None and not guard.valid():
                    raise NotReplicated(
                        f"PostgreSQL unreachable and lease lost: {reason}"
                    ) from None
                if guard is None and time.monotonic() > deadline:
                    raise StoreError(
                        f"PostgreSQL {self.where()} unreachable for {self.retry_seconds}s "
                        f"(--pg-retry-seconds): {reason}"
                    ) from None
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if self.link.outage is not None:
                log.warning("pg_reachable", where=self.where())
                self.link.reachable()
            return result

    def _outage(self, what: str, reason: str, backoff: float) -> None:
        if self.link.outage is None:
            log.warning(
                "pg_unreachable",
                where=self.where(),
                during=what,
                error=reason,
                action="retrying with backoff; publishers blocked, no confirms meanwhile",
            )
        self.link.unreachable(reason)
        log.debug("pg_retry", during=what, in_seconds=backoff)

    def _drop_session(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _plugin_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"plugmq-store-pg {version('plugmq-store-pg')}"
    except PackageNotFoundError:
        return "plugmq-store-pg"
