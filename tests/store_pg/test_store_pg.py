"""The PostgreSQL store on a real server: bad input, exclusion, fencing, outages.

The store contract itself (every record kept, recovery order, redelivered flags, kill -9)
runs in ``tests/store/test_store_contract.py`` against this store too.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from support.pg_group import free_port
from support.postgres import PostgresServer

from plugmq.store import NotReplicated, StoreError
from plugmq.store.records import MessageEnqueued, QueueDeclared
from plugmq_store_pg.lease import Holder, LockTable
from plugmq_store_pg.link import EpochGuard, Link
from plugmq_store_pg.schema import SCHEMA_VERSION
from plugmq_store_pg.session import Database
from plugmq_store_pg.store import PGStore


def message(message_id: int, queue: str = "q") -> MessageEnqueued:
    """A persistent message whose body names its id."""
    return MessageEnqueued("/", queue, message_id, "", queue, b"\x00", b"m%d" % message_id)


def stored_ids(store: PGStore) -> list[int]:
    """Ids of every message the store recovers."""
    return [r.message_id for r in store.recover(lambda *_: None) if isinstance(r, MessageEnqueued)]


def sql(server: PostgresServer, schema: str, statement: str) -> None:
    """Run one statement on the test's schema, as an operator with psql would."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(statement)


def test_a_newer_schema_version_is_refused(postgres, pg_schema) -> None:
    store = PGStore(postgres.dsn(), schema_name=pg_schema)
    store.open()
    store.apply([QueueDeclared("/", "q"), message(1)])
    store.close()
    sql(postgres, pg_schema, f"UPDATE plugmq_schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=f"layout version {SCHEMA_VERSION + 1}; this plugin"):
        PGStore(postgres.dsn(), schema_name=pg_schema).open()
    sql(postgres, pg_schema, f"UPDATE plugmq_schema_version SET version = {SCHEMA_VERSION}")
    again = PGStore(postgres.dsn(), schema_name=pg_schema)
    again.open()
    assert stored_ids(again) == [1], "the refusal must not have touched the data"
    again.close()


def test_two_groups_on_one_schema_are_refused(postgres, pg_schema) -> None:
    first = PGStore(postgres.dsn(), schema_name=pg_schema, group="alpha")
    first.open()
    first.close()
    with pytest.raises(StoreError, match="belongs to broker group 'alpha', this broker is in"):
        PGStore(postgres.dsn(), schema_name=pg_schema, group="beta").open()


def test_wrong_password_is_a_clear_error_at_once(postgres, pg_schema) -> None:
    started = time.monotonic()
    store = PGStore(postgres.dsn(password="wrong"), schema_name=pg_schema, retry_seconds=30)
    with pytest.raises(StoreError, match="password authentication failed for user"):
        store.open()
    assert time.monotonic() - started < 5, "bad credentials must not be retried"


def test_a_missing_database_is_a_clear_error(postgres, pg_schema) -> None:
    store = PGStore(postgres.dsn(dbname="no_such_db"), schema_name=pg_schema)
    with pytest.raises(StoreError, match='database "no_such_db" does not exist'):
        store.open()


def test_an_unreachable_database_is_retried_then_reported(pg_schema) -> None:
    dsn = f"host=127.0.0.1 port={free_port()} user=u password=p dbname=d"
    store = PGStore(dsn, schema_name=pg_schema, retry_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"unreachable for 1.0s \(--pg-retry-seconds\)"):
        store.open()
    assert time.monotonic() - started >= 1.0


def test_two_standalone_brokers_never_write_one_schema(postgres, pg_schema) -> None:
    first = PGStore(postgres.dsn(), schema_name=pg_schema)
    first.open()
    second = PGStore(postgres.dsn(), schema_name=pg_schema)
    with pytest.raises(StoreError, match=r"is in use by plugmq .* pid .*only one standalone"):
        second.open()
    first.close()
    second.open()  # the lock went with the first broker's session
    second.close()


def test_a_deposed_master_commits_nothing(postgres, pg_schema) -> None:
    """A master paused past its lease: its next transaction is refused by the database."""
    db = Database(postgres.dsn(), pg_schema)
    old_table = LockTable(db, "plugmq", 2.0, Holder.this_process("amqp://old/"))
    epoch, _ = old_table.try_take()
    guard = EpochGuard(epoch=epoch, valid_until=time.monotonic() + 60)
    old = PGStore(postgres.dsn(), schema_name=pg_schema, link=Link(guard=guard))
    old.open()
    old.apply([QueueDeclared("/", "q"), message(1)])

    new_table = LockTable(db, "plugmq", 2.0, Holder.this_process("amqp://new/"))
    assert new_table.try_take()[0] is None, "a live lease was taken"
    sql(postgres, pg_schema, "UPDATE plugmq_lock SET renewed_at = now() - interval '1 hour'")
    new_epoch, before = new_table.try_take()
    assert new_epoch == epoch + 1 and before.holder == old_table.me.name

    with pytest.raises(NotReplicated, match=f"carries epoch {new_epoch}, this master holds"):
        old.apply([message(2)])
    assert guard.deposed, "the strategy must hear of the refusal"
    assert not old_table.renew(epoch), "the old master renewed a lease it lost"
    old.close()

    new = PGStore(
        postgres.dsn(), schema_name=pg_schema, link=Link(guard=EpochGuard(epoch=new_epoch))
    )
    new.open()
    assert stored_ids(new) == [1]
    new.close()
    old_table.close()
    new_table.close()


def test_a_takeover_waits_for_a_write_in_flight(postgres, pg_schema) -> None:
    """The epoch check holds the lock row until COMMIT: a takeover cannot slip in between."""
    db = Database(postgres.dsn(), pg_schema)
    table = LockTable(db, "plugmq", 4.0, Holder.this_process("amqp://old/"))
    epoch, _ = table.try_take()
    with psycopg.connect(postgres.dsn()) as writer:  # a store transaction, half way
        writer.execute(f'SET search_path TO "{pg_schema}"')
        writer.execute("SELECT epoch FROM plugmq_lock FOR KEY SHARE")
        writer.execute("INSERT INTO plugmq_meta VALUES ('written-in-flight', 1)")
        sql(postgres, pg_schema, "UPDATE plugmq_lock SET renewed_at = now() - interval '1 hour'")
        taken: list[int | None] = []
        other = LockTable(db, "plugmq", 4.0, Holder.this_process("amqp://new/"))
        thread = threading.Thread(target=lambda: taken.append(other.try_take()[0]))
        thread.start()
        thread.join(0.5)  # other.lock_wait is 1 s
        assert thread.is_alive(), "the takeover did not wait for the write in flight"
        writer.commit()
    thread.join(5)
    assert taken == [epoch + 1] and other.stale_sessions_ended == 0
    with psycopg.connect(postgres.dsn()) as check:
        check.execute(f'SET search_path TO "{pg_schema}"')
        assert check.execute("SELECT value FROM plugmq_meta").fetchall() == [(1,)]
    table.close()
    other.close()


def test_a_database_restart_during_writes_loses_nothing(postgres, pg_schema) -> None:
    store = PGStore(postgres.dsn(), schema_name=pg_schema, retry_seconds=60)
    store.open()
    store.apply([QueueDeclared("/", "q")])
    restarter = threading.Thread(target=postgres.restart)
    restarter.start()
    written: list[int] = []
    while restarter.is_alive() or len(written) < 300:
        message_id = len(written) + 1
        store.apply([message(message_id)])  # blocks and retries while the server is down
        written.append(message_id)
    restarter.join(60)
    assert store.link.outages == 1 and store.link.outage is None
    store.close()
    reopened = PGStore(postgres.dsn(), schema_name=pg_schema)
    reopened.open()
    assert stored_ids(reopened) == written
    reopened.close()


def test_a_paused_write_cannot_hold_a_takeover_up(postgres, pg_schema) -> None:
    """A master SIGSTOPped inside a transaction: the server ends its session after the idle
    timeout, so the row lock it held goes and a slave takes over; nothing of it commits."""
    db = Database(postgres.dsn(), pg_schema, idle_timeout=0.5)
    table = LockTable(db, "plugmq", 2.0, Holder.this_process("amqp://old/"))
    epoch, _ = table.try_take()
    paused = db.connect()
    paused.execute("BEGIN")
    paused.execute("SELECT epoch FROM plugmq_lock FOR KEY SHARE")
    paused.execute("INSERT INTO plugmq_meta VALUES ('never-committed', 1)")
    sql(postgres, pg_schema, "UPDATE plugmq_lock SET renewed_at = now() - interval '1 hour'")
    other = LockTable(db, "plugmq", 2.0, Holder.this_process("amqp://new/"))
    started = time.monotonic()
    assert other.try_take()[0] == epoch + 1  # lock_timeout (1 s) outlasts the idle timeout
    assert time.monotonic() - started < 1.0
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
        paused.execute("COMMIT")
    with psycopg.connect(postgres.dsn()) as check:
        check.execute(f'SET search_path TO "{pg_schema}"')
        assert check.execute("SELECT count(*) FROM plugmq_meta").fetchone() == (0,)
    table.close()
    other.close()


def test_a_master_paused_inside_a_pipeline_is_ended_once_its_lease_lapsed(
    postgres, pg_schema
) -> None:
    """Stopped between a pipeline's statements and its Sync, a session is never "idle in
    transaction" to the server; the slave ends it (pg_terminate_backend) once the lease lapsed."""
    db = Database(postgres.dsn(), pg_schema, idle_timeout=0.5)
    table = LockTable(db, "plugmq", 1.0, Holder.this_process("amqp://old/"))
    epoch, _ = table.try_take()
    paused = db.connect()
    pgconn = paused.pgconn
    pgconn.enter_pipeline_mode()
    pgconn.send_query_params(b"BEGIN", None)
    pgconn.send_query_params(b"SELECT epoch FROM plugmq_lock FOR KEY SHARE", None)
    pgconn.send_flush_request()  # the server runs both; no Sync, as if the broker froze here
    pgconn.flush()
    with psycopg.connect(postgres.dsn(), autocommit=True) as watch:
        deadline = time.monotonic() + 10
        while not watch.execute(
            "SELECT 1 FROM pg_locks WHERE pid = %s AND granted AND mode = 'RowShareLock'",
            (paused.info.backend_pid,),
        ).fetchone():
            assert time.monotonic() < deadline, "the paused session never took the row"
            time.sleep(0.01)
    other = LockTable(db, "plugmq", 1.0, Holder.this_process("amqp://new/"))
    assert other.try_take()[0] is None, "a live lease was taken"
    assert other.stale_sessions_ended == 0
    sql(postgres, pg_schema, "UPDATE plugmq_lock SET renewed_at = now() - interval '1 hour'")
    assert other.try_take()[0] is None  # waited lock_wait, then ended the stale session
    assert other.stale_sessions_ended == 1
    assert other.try_take()[0] == epoch + 1
    paused.close()
    table.close()
    other.close()
