"""The lock row: who is the group's master, with which epoch, and until when.

ActiveMQ's lease database locker, in one row of ``plugmq_lock``. Times are the database's
(``clock_timestamp()``), so brokers with skewed clocks agree on a lease's age.

* :meth:`LockTable.try_take` locks the row ``FOR UPDATE`` (waiting for every in-flight store
  transaction, which holds it ``FOR KEY SHARE``), and takes it when it was released, never
  renewed, renewed longer ago than the holder's own lease, or already ours; the epoch goes up
  by one. From that COMMIT on, the old master's transactions fail their epoch check.
* A deposed master stopped (SIGSTOP, a frozen VM) inside a transaction keeps its row lock:
  the server ends its sessions after ``idle_in_transaction_session_timeout`` when it stopped
  between statements, and :meth:`LockTable.try_take` ends them (``pg_terminate_backend``) once
  the lease has lapsed when it stopped in the middle of a pipeline. Its transaction rolls back.
* :meth:`LockTable.renew` moves ``renewed_at`` only while the row still carries our epoch and
  names us; zero rows means we were deposed.
* :meth:`LockTable.release` marks the row released on a clean stop, so a slave takes over at
  once instead of after the lease.

Each method uses the table's own session (never the store's: a long batch must not delay a
renewal) and is called from a worker thread.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

import psycopg

from plugmq_store_pg import schema
from plugmq_store_pg.session import Database

LOCK_COLUMNS = (
    "grp, epoch, holder, holder_url, "
    "extract(epoch FROM clock_timestamp() - renewed_at)::float8, lease_seconds, released, "
    "renewed_at"
)


@dataclass(frozen=True)
class Holder:
    """A broker process that may hold the lock: a readable name, a nonce, and its URL."""

    name: str
    url: str

    @classmethod
    def this_process(cls, url: str) -> Holder:
        """This process, with a nonce so a restarted broker with the same pid is another."""
        nonce = uuid.uuid4().hex[:8]
        return cls(f"{socket.gethostname()} pid {os.getpid()} {nonce}", url)


@dataclass(frozen=True)
class LockRow:
    """The lock row as read."""

    group: str
    epoch: int
    holder: str | None
    holder_url: str | None
    #: Seconds since the last renewal, by the database's clock (None: never renewed).
    age: float | None
    lease_seconds: float
    released: bool
    since: str | None

    def lapsed(self) -> bool:
        """True when nobody holds the lock: released, never taken, or not renewed in time."""
        return self.released or self.age is None or self.age > self.lease_seconds

    def describe(self) -> str:
        """``epoch 4 held by host pid 12 (amqp://...), renewed 0.8s ago``."""
        age = "never renewed" if self.age is None else f"renewed {self.age:.1f}s ago"
        state = "released" if self.released else f"lease {self.lease_seconds}s"
        return f"epoch {self.epoch} held by {self.holder} ({self.holder_url}), {age}, {state}"


def _row(values: tuple | None) -> LockRow:
    if values is None:
        raise psycopg.DataError("plugmq_lock has no row")
    group, epoch, holder, url, age, lease, released, since = values
    return LockRow(group, epoch, holder, url, age, lease, released, str(since) if since else None)


class LockTable:
    """The lock row seen by one broker (``me``) of group ``group``."""

    def __init__(self, db: Database, group: str, lease_seconds: float, me: Holder) -> None:
        self.db = db
        self.group = group
        self.lease_seconds = lease_seconds
        self.me = me
        #: Longest wait for the row lock (a write in flight) before looking for a stale holder.
        self.lock_wait = min(1.0, lease_seconds / 2)
        #: Sessions of deposed brokers this table ended (see :meth:`try_take`).
        self.stale_sessions_ended = 0
        self._conn: psycopg.Connection | None = None

    def _session(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = self.db.connect()
            try:
                schema.prepare(conn, self.db.schema, self.group, "plugmq-store-pg")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def discard(self) -> None:
        """Forget the session (a call on it was abandoned); the next call opens another."""
        self._conn = None

    def close(self) -> None:
        """Close the session."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def read(self) -> LockRow:
        """The row as it is now."""
        conn = self._session()
        return _row(conn.execute(f"SELECT {LOCK_COLUMNS} FROM plugmq_lock").fetchone())

    def try_take(self) -> tuple[int | None, LockRow]:
        """``(new epoch, row before)`` when we took the lock, ``(None, row)`` otherwise."""
        try:
            return self._take()
        except psycopg.errors.LockNotAvailable:
            # A transaction holds the row past lock_timeout. If the lease has lapsed, its
            # broker is deposed by definition: end its sessions (a master paused inside a
            # pipeline is never "idle in transaction" to the server, so no timeout frees it).
            row = self.read()
            if row.lapsed():
                self.stale_sessions_ended += self._end_stale_sessions()
            return None, row

    def _end_stale_sessions(self) -> int:
        """Terminate every other session holding a lock on ``plugmq_lock``; how many."""
        conn = self._session()
        ended = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE relation = 'plugmq_lock'::regclass AND granted AND pid <> pg_backend_pid()"
        ).fetchone()
        return int(ended[0]) if ended else 0

    def _take(self) -> tuple[int | None, LockRow]:
        conn = self._session()
        with conn.transaction():
            # A write in flight holds the row FOR KEY SHARE until its COMMIT; wait that long,
            # not for a broker that stopped in the middle of one (see try_take).
            conn.execute(f"SET LOCAL lock_timeout = '{int(self.lock_wait * 1000)}ms'")
            row = _row(
                conn.execute(f"SELECT {LOCK_COLUMNS} FROM plugmq_lock FOR UPDATE").fetchone()
            )
            if not row.lapsed() and row.holder != self.me.name:
                return None, row
            taken = conn.execute(
                "UPDATE plugmq_lock SET epoch = epoch + 1, holder = %s, holder_url = %s, "
                "renewed_at = clock_timestamp(), lease_seconds = %s, released = false "
                "RETURNING epoch",
                (self.me.name, self.me.url, self.lease_seconds),
            ).fetchone()
            self._register(conn)
        assert taken is not None
        return int(taken[0]), row

    def renew(self, epoch: int) -> bool:
        """Renew our lease; False when the row carries another epoch or holder (deposed)."""
        conn = self._session()
        with conn.transaction():
            renewed = conn.execute(
                "UPDATE plugmq_lock SET renewed_at = clock_timestamp() "
                "WHERE epoch = %s AND holder = %s AND NOT released RETURNING epoch",
                (epoch, self.me.name),
            ).fetchone()
            if renewed is not None:
                self._register(conn)
        return renewed is not None

    def release(self, epoch: int) -> bool:
        """Mark the lease released (clean stop) if it is still ours."""
        conn = self._session()
        with conn.transaction():
            done = conn.execute(
                "UPDATE plugmq_lock SET released = true WHERE epoch = %s AND holder = %s "
                "RETURNING epoch",
                (epoch, self.me.name),
            ).fetchone()
        return done is not None

    def members(self) -> list[str]:
        """URLs of the group's brokers seen lately (``cluster_urls``), the holder's first."""
        conn = self._session()
        rows = conn.execute(
            "SELECT url FROM plugmq_members WHERE seen_at > clock_timestamp() - "
            "make_interval(secs => %s) ORDER BY url = %s DESC, url",
            (max(60.0, 10 * self.lease_seconds), self.me.url),
        ).fetchall()
        return [url for (url,) in rows]

    def register(self) -> None:
        """Record this broker's URL as a member (standbys too, once a lease)."""
        conn = self._session()
        with conn.transaction():
            self._register(conn)

    def _register(self, conn: psycopg.Connection) -> None:
        conn.execute(
            "INSERT INTO plugmq_members VALUES (%s, clock_timestamp()) "
            "ON CONFLICT (url) DO UPDATE SET seen_at = EXCLUDED.seen_at",
            (self.me.url,),
        )
