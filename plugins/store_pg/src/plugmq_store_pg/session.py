"""Sessions on the group's schema, and telling errors worth retrying from those that are not."""

from __future__ import annotations

import os
import socket

import psycopg

from plugmq.store import StoreError
from plugmq_store_pg import schema

#: SQLSTATE classes that retrying cannot fix: authentication, missing database, privileges.
FATAL_STATES = ("28", "3D", "42501")
#: The same refusals at connection time, where libpq reports text and no SQLSTATE.
FATAL_TEXTS = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "password is specified",
    "no password supplied",
)


#: Errors after which the session is gone but a new one may work: the server unreachable,
#: restarting, or ending a session left idle inside a transaction (a paused broker).
LOST = (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout)


class Database:
    """Where the group's tables are: a libpq DSN and a schema name."""

    def __init__(self, dsn: str, schema_name: str, idle_timeout: float = 0.0) -> None:
        self.dsn = dsn
        self.schema = schema_name
        #: Under ``--ha pg``: the server ends a session of ours idle inside a transaction this
        #: long (a SIGSTOPped master), so its row lock cannot hold a takeover up. 0: never.
        self.idle_timeout = idle_timeout

    def where(self) -> str:
        """``schema 'x' on host:port/db`` for messages (never the password)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError:
            info = {}
        host = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
        return f"schema {self.schema!r} on {host}/{info.get('dbname', '')}"

    def connect(self) -> psycopg.Connection:
        """A new autocommit session on the schema (every transaction is explicit).

        Raises :class:`StoreError` at once for what retrying cannot fix (credentials, a
        missing database), ``psycopg.OperationalError`` when the server is unreachable.
        """
        try:
            conn = psycopg.connect(
                self.dsn,
                application_name=f"plugmq {socket.gethostname()} pid {os.getpid()}",
                connect_timeout=5,
                autocommit=True,
                options=f"-c idle_in_transaction_session_timeout={int(self.idle_timeout * 1000)}",
            )
        except psycopg.OperationalError as error:
            raise self.classify(error) from None
        try:
            schema.use_schema(conn, self.schema)
        except psycopg.Error as error:
            conn.close()
            raise self.classify(error) from None
        return conn

    def classify(self, error: psycopg.Error) -> Exception:
        """A :class:`StoreError` for what retrying cannot fix; ``error`` itself otherwise."""
        state = error.sqlstate or ""
        message = first_line(error)
        if state.startswith(FATAL_STATES) or any(text in message for text in FATAL_TEXTS):
            return StoreError(f"cannot use PostgreSQL {self.where()}: {message}")
        return error


def first_line(error: BaseException) -> str:
    """The first line of an error's text (libpq's messages run over several)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else repr(error)
