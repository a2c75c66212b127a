"""The tables, created and migrated by the plugin, and the checks made at every open.

Everything lives in one PostgreSQL schema (``--pg-schema``, default ``plugmq``), which belongs
to one broker group: ``plugmq_lock`` holds the group's name, its mastership epoch and lease.
``plugmq_schema_version`` says which layout the tables have. :func:`prepare` creates a new
schema, upgrades an older layout in place (one transaction per step) and refuses a newer one,
under a transaction-scoped advisory lock so that brokers starting together do not race.

============================  ================================================================
``plugmq_schema_version``     one row: layout version and the plugin version that wrote it
``plugmq_lock``               one row: group, epoch, holder, holder URL, lease renewal time
``plugmq_members``            URLs of the group's brokers (``cluster_urls``), last seen
``plugmq_meta``               ``clean``: present only after a clean close (see the store)
``plugmq_config``             ``ConfigSet`` values (core and plugin settings)
``plugmq_exchanges``          durable exchanges
``plugmq_queues``             durable queues
``plugmq_bindings``           bindings, keyed by their identity
``plugmq_messages``           persistent messages, one row per (queue, message), id order
============================  ================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from plugmq.store import StoreError

#: The layout this plugin writes.
SCHEMA_VERSION = 1

#: DDL of each version step (index ``n`` upgrades ``n`` to ``n + 1``).
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE plugmq_schema_version (
            version integer NOT NULL, written_by text NOT NULL)""",
        """CREATE TABLE plugmq_lock (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            grp text NOT NULL,
            epoch bigint NOT NULL DEFAULT 0,
            holder text,
            holder_url text,
            renewed_at timestamptz,
            lease_seconds double precision NOT NULL DEFAULT 0,
            released boolean NOT NULL DEFAULT true)""",
        "CREATE TABLE plugmq_members (url text PRIMARY KEY, seen_at timestamptz NOT NULL)",
        "CREATE TABLE plugmq_meta (key text PRIMARY KEY, value bigint NOT NULL)",
        """CREATE TABLE plugmq_config (
            namespace bytea, key bytea, value bytea NOT NULL, PRIMARY KEY (namespace, key))""",
        """CREATE TABLE plugmq_exchanges (
            vhost bytea, name bytea, type text NOT NULL, auto_delete boolean NOT NULL,
            internal boolean NOT NULL, arguments bytea NOT NULL, PRIMARY KEY (vhost, name))""",
        """CREATE TABLE plugmq_queues (
            vhost bytea, name bytea, auto_delete boolean NOT NULL, arguments bytea NOT NULL,
            PRIMARY KEY (vhost, name))""",
        """CREATE TABLE plugmq_bindings (
            vhost bytea, source bytea, destination bytea, destination_kind text,
            routing_key bytea, args_key bytea, arguments bytea NOT NULL,
            PRIMARY KEY (vhost, source, destination, destination_kind, routing_key, args_key))""",
        """CREATE TABLE plugmq_messages (
            vhost bytea, queue bytea, message_id bigint, delivered boolean NOT NULL,
            enqueued_at double precision NOT NULL, exchange bytea NOT NULL,
            routing_key bytea NOT NULL, header bytea NOT NULL, body bytea NOT NULL,
            PRIMARY KEY (vhost, queue, message_id))""",
    ],
]


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` found."""

    created: bool
    version: int


def use_schema(conn: psycopg.Connection, schema: str) -> None:
    """Point the session at ``schema`` (created if missing)."""
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))


def prepare(conn: psycopg.Connection, schema: str, group: str, written_by: str) -> Prepared:
    """Create or upgrade the tables; refuse a newer layout or another group's schema."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"plugmq-schema:{schema}",))
        version = _version(conn, schema)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"PostgreSQL schema {schema!r} has plugmq store layout version {version}; "
                f"this plugin reads up to version {SCHEMA_VERSION}: run the plugmq version "
                "that wrote it (or a newer one), or point --pg-schema elsewhere"
            )
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)  # type: ignore[arg-type]
        if version == 0:
            conn.execute(
                "INSERT INTO plugmq_schema_version VALUES (%s, %s)", (SCHEMA_VERSION, written_by)
            )
            conn.execute("INSERT INTO plugmq_lock (grp) VALUES (%s)", (group,))
        elif version < SCHEMA_VERSION:
            conn.execute(
                "UPDATE plugmq_schema_version SET version = %s, written_by = %s",
                (SCHEMA_VERSION, written_by),
            )
        owner = conn.execute("SELECT grp FROM plugmq_lock").fetchone()
    if owner is None or owner[0] != group:
        raise StoreError(
            f"PostgreSQL schema {schema!r} belongs to broker group "
            f"{owner[0] if owner else '?'!r}, this broker is in group {group!r} (--ha-group): "
            "give every group its own --pg-schema (two groups on one schema would both write)"
        )
    return Prepared(created=version == 0, version=SCHEMA_VERSION)


def _version(conn: psycopg.Connection, schema: str) -> int:
    """The layout version of the tables (0: none yet)."""
    exists = conn.execute(
        "SELECT 1 FROM information_schema.tables "
        "WHERE table_schema = %s AND table_name = 'plugmq_schema_version'",
        (schema,),
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT max(version) FROM plugmq_schema_version").fetchone()
    if row is None or row[0] is None:
        raise StoreError(f"PostgreSQL schema {schema!r}: plugmq_schema_version is empty")
    return int(row[0])
