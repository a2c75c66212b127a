"""Opening the Berkeley DB environment: the directory, the broker lock, and error mapping.

Everything that can go wrong before the first record is read is turned into a
:class:`plugmq.store.StoreError` that names the path and says what to do. The environment is
transactional and always opened with ``DB_RECOVER``: after a kill -9 at any instant Berkeley
DB's own write-ahead log brings the databases back to the last committed transaction.
``DB_RECOVER`` requires that no other process uses the environment; :class:`DirectoryLock`
(an exclusive ``flock`` on ``LOCK``) guarantees that.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from berkeleydb import db

from plugmq.store import StoreError

#: The database files of the store, in the environment's home directory.
DATABASE_FILES = ("entities.db", "messages.db", "bodies.db", "refs.db")

_ENV_FLAGS = (
    db.DB_CREATE
    | db.DB_INIT_TXN
    | db.DB_INIT_LOCK
    | db.DB_INIT_LOG
    | db.DB_INIT_MPOOL
    | db.DB_RECOVER
    | db.DB_THREAD
)
_MAX_LOCKS = 100_000
_LOG_BUFFER = 4 * 1024 * 1024
_LOG_FILE_SIZE = 16 * 1024 * 1024
_WHAT_TO_DO = (
    "If it is not a plugmq Berkeley DB store or it is damaged, move the directory away "
    "(or restore a backup) and start again, or pass another --data-dir."
)


@dataclass
class Databases:
    """The open databases of one environment."""

    entities: db.DB
    messages: db.DB
    bodies: db.DB
    refs: db.DB

    def all(self) -> tuple[db.DB, ...]:
        """Every database, for closing."""
        return (self.entities, self.messages, self.bodies, self.refs)


def describe(error: Exception) -> str:
    """The human part of a Berkeley DB exception (its message without the errno)."""
    if len(error.args) >= 2:
        return str(error.args[1]).strip()
    return str(error)


def prepare_directory(home: Path) -> None:
    """Create ``home`` (``<data_dir>/bdb``) or raise a clear :class:`StoreError`."""
    data_dir = home.parent
    if data_dir.exists() and not data_dir.is_dir():
        raise StoreError(
            f"data directory {data_dir} is a file, not a directory: "
            "move it away or pass --data-dir naming a directory"
        )
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(
            f"cannot create the Berkeley DB store directory {home}: {error.strerror}. "
            "Check that the data directory is a writable directory, or pass another --data-dir."
        ) from error
    if not os.access(home, os.R_OK | os.W_OK | os.X_OK):
        raise StoreError(
            f"the Berkeley DB store directory {home} is not readable and writable by this "
            f"user (uid {os.geteuid()}): fix its permissions or pass another --data-dir"
        )


class DirectoryLock:
    """An exclusive, non-blocking ``flock`` on ``<home>/LOCK`` naming the holder's pid and host.

    The kernel releases the lock when the holder dies, so a kill -9'd broker never leaves a
    stale lock behind.
    """

    def __init__(self, home: Path) -> None:
        self.path = home / "LOCK"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreError` naming the broker that holds it."""
        try:
            handle = open(self.path, "a+")  # noqa: SIM115 - held open until release()
        except OSError as error:
            raise StoreError(
                f"cannot open the lock file {self.path}: {error.strerror}. "
                "Check the permissions of the data directory."
            ) from error
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(handle)
            handle.close()
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreError(
                    f"the Berkeley DB store in {self.path.parent} is in use by another broker "
                    f"({holder}; lock file {self.path}): stop that broker first, "
                    "or give this one another --data-dir"
                ) from None
            raise StoreError(f"cannot lock {self.path}: {error.strerror}") from error
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Release the lock (safe to call twice). The file stays; its content is stale."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _read_holder(handle: IO[str]) -> str:
    """What the lock holder wrote into the lock file (``pid 123 on host``)."""
    try:
        handle.seek(0)
        text = handle.read(200).strip()
    except OSError:
        text = ""
    return text or "pid unknown"


def open_environment(
    home: Path,
    cache_mb: int,
    nosync: bool,
    *,
    configure: Callable[[db.DBEnv], None] | None = None,
    extra_flags: int = 0,
) -> db.DBEnv:
    """Open (creating and recovering) the transactional environment in ``home``.

    ``configure`` runs on the environment before it is opened and ``extra_flags`` are added to
    the open flags (replication: :class:`plugmq_store_bdb.replication.Replicator`).
    """
    env = db.DBEnv()
    try:
        env.set_cachesize(cache_mb // 1024, (cache_mb % 1024) * 1024 * 1024, 1)
        env.set_lg_bsize(_LOG_BUFFER)
        env.set_lg_max(_LOG_FILE_SIZE)
        env.set_lk_max_locks(_MAX_LOCKS)
        env.set_lk_max_objects(_MAX_LOCKS)
        env.set_lk_detect(db.DB_LOCK_DEFAULT)
        env.log_set_config(db.DB_LOG_AUTO_REMOVE, 1)
        if nosync:
            env.set_flags(db.DB_TXN_NOSYNC, 1)
        env.set_get_returns_none(2)
        if configure is not None:
            configure(env)
        env.open(str(home), _ENV_FLAGS | extra_flags, 0o600)
    except db.DBError as error:
        with contextlib.suppress(db.DBError):
            env.close()
        raise StoreError(
            f"cannot open the Berkeley DB environment in {home}: {describe(error)}. " + _WHAT_TO_DO
        ) from None
    return env


def open_databases(
    env: db.DBEnv, home: Path, retryable: tuple[type[db.DBError], ...] = ()
) -> Databases:
    """Open (or create) every database file of the store.

    Errors of a ``retryable`` type are raised as they are (the caller waits and retries);
    every other error becomes a :class:`StoreError` naming the file.
    """
    opened: list[db.DB] = []
    try:
        for filename in DATABASE_FILES:
            opened.append(_open_btree(env, home, filename, retryable))
    except (StoreError, *retryable):
        for database in opened:
            with contextlib.suppress(db.DBError):
                database.close()
        raise
    return Databases(*opened)


def _open_btree(
    env: db.DBEnv, home: Path, filename: str, retryable: tuple[type[db.DBError], ...]
) -> db.DB:
    """Open one B-tree database file, with page checksums so corruption is detected."""
    database = db.DB(env)
    try:
        database.set_flags(db.DB_CHKSUM)
        database.open(
            filename,
            dbtype=db.DB_BTREE,
            flags=db.DB_CREATE | db.DB_AUTO_COMMIT | db.DB_THREAD,
            mode=0o600,
        )
    except db.DBError as error:
        with contextlib.suppress(db.DBError):
            database.close()
        if isinstance(error, retryable):
            raise
        raise StoreError(
            f"cannot open {home / filename}: {describe(error)}. " + _WHAT_TO_DO
        ) from None
    return database


def corrupt(home: Path, detail: str) -> StoreError:
    """The error for data that Berkeley DB read but this store cannot make sense of."""
    return StoreError(f"the Berkeley DB store in {home} is damaged: {detail}. " + _WHAT_TO_DO)
