"""Brokers on ``--store pg``: bad input at start, kill -9 under confirmed load, PostgreSQL
restarted under load. Real broker processes, real pika clients, a real PostgreSQL.

``PG_CRASH_ROUNDS=10`` runs the long crash loop (the default keeps CI-sized rounds).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pika
import pytest
from support.broker_process import broker_process
from support.pg_group import PERSISTENT, Clients, PgGroup, check_ledger, drain

ROUNDS = int(os.environ.get("PG_CRASH_ROUNDS", "5"))
SEED = 20261205


def test_wrong_credentials_stop_the_broker_with_a_clear_error(tmp_path: Path, postgres) -> None:
    dsn = postgres.dsn(password="wrong")
    broker = broker_process(tmp_path, "--store", "pg", "--pg-dsn", dsn)
    with pytest.raises(RuntimeError, match="password authentication failed for user"):
        broker.start()
    assert broker.process.returncode != 0


def test_store_pg_without_a_dsn_is_refused(tmp_path: Path) -> None:
    broker = broker_process(tmp_path, "--store", "pg")
    with pytest.raises(RuntimeError, match="--store pg needs --pg-dsn"):
        broker.start()


def test_a_second_standalone_broker_on_one_schema_is_refused(
    tmp_path: Path, postgres, pg_schema
) -> None:
    group = PgGroup(tmp_path, postgres, pg_schema, size=2, ha=False)
    first = group.brokers[0].start()
    try:
        with pytest.raises(RuntimeError, match="only one standalone broker may use a schema"):
            group.brokers[1].start()
        assert first.alive
    finally:
        group.stop()


def test_persistent_messages_survive_a_restart(tmp_path: Path, postgres, pg_schema) -> None:
    group = PgGroup(tmp_path, postgres, pg_schema, size=1, ha=False)
    broker = group.brokers[0].start()
    try:
        connection = pika.BlockingConnection(group.parameters())
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("kept", durable=True, arguments={"x-max-length": 1000})
        channel.exchange_declare("logs", "topic", durable=True)
        channel.queue_bind("kept", "logs", "a.#")
        for number in range(50):
            channel.basic_publish("logs", "a.b", b"%d" % number, PERSISTENT)
        connection.close()
        assert broker.stop() == 0
        broker.start()
        connection = pika.BlockingConnection(group.parameters())
        channel = connection.channel()
        channel.basic_publish("logs", "a.c", b"routed after restart")
        bodies = [channel.basic_get("kept", auto_ack=True)[2] for _ in range(51)]
        assert bodies == [b"%d" % n for n in range(50)] + [b"routed after restart"]
        connection.close()
    finally:
        group.stop()


@pytest.mark.timeout(60 + 30 * ROUNDS)
def test_kill_9_under_confirmed_load_loses_nothing(tmp_path: Path, postgres, pg_schema) -> None:
    rng = random.Random(SEED)
    group = PgGroup(tmp_path, postgres, pg_schema, size=1, ha=False)
    broker = group.brokers[0].start()
    clients = Clients(group.parameters(), "crash-orders").start(publishers=3)
    try:
        for _ in range(ROUNDS):
            clients.wait_progress(each=20)
            time.sleep(rng.uniform(0.0, 0.3))  # a seeded random instant under load
            broker.kill()
            broker.start()
        clients.wait_progress(each=20)
        clients.stop()
        check_ledger(clients.ledger, drain(group.parameters(), "crash-orders"))
    finally:
        clients.stop()
        group.stop()


def test_postgres_restarted_under_load(tmp_path: Path, postgres, pg_schema) -> None:
    group = PgGroup(tmp_path, postgres, pg_schema, size=1, ha=False)
    broker = group.brokers[0].start()
    clients = Clients(group.parameters(), "restart-orders").start(publishers=3)
    try:
        clients.wait_progress(each=20)
        postgres.stop("fast")
        broker.wait_event("pg_unreachable")
        blocked = broker.wait_event("publishers_blocked")
        assert blocked["reason"].startswith("PostgreSQL unreachable")
        confirmed_while_down = len(clients.ledger.confirmed)
        time.sleep(0.5)  # a database that stays down a while; nothing may be confirmed then
        assert len(clients.ledger.confirmed) == confirmed_while_down
        postgres.start()
        broker.wait_event("pg_reachable")
        broker.wait_event("publishers_unblocked")
        clients.wait_progress(each=20)
        clients.stop()
        check_ledger(clients.ledger, drain(group.parameters(), "restart-orders"))
        assert broker.alive
    finally:
        clients.stop()
        group.stop()
        if not postgres.data_dir.joinpath("postmaster.pid").exists():
            postgres.start()
