"""Fixtures for the whole suite: real broker processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import zookeeper
from support.broker_process import BrokerProcess, broker_process
from support.failover_group import FailoverGroup, ToyHAMode
from support.ledger import Ledger
from support.postgres import PostgresServer, start_postgres


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A running broker with the in-memory store, stopped after the test."""
    process = broker_process(tmp_path, "--store", "memory").start()
    yield process
    process.stop()


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A running broker with the Berkeley DB store in a temporary data directory."""
    process = broker_process(tmp_path).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One memory-store broker for tests that only need a working broker (faster)."""
    process = broker_process(tmp_path_factory.mktemp("shared"), "--store", "memory").start()
    yield process
    process.stop()


@pytest.fixture
def toy_group(tmp_path: Path) -> Iterator[FailoverGroup]:
    """Three brokers under the toy HA strategy sharing one data directory; member 0 is
    master. ``toy_group.ledger`` is the test's invariant ledger (told about every kill)."""
    group = FailoverGroup(tmp_path, ToyHAMode(tmp_path), size=3, ledger=Ledger())
    group.start()
    yield group
    group.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (initdb + pg_ctl), removed at the end.

    Skips when PostgreSQL is not installed (``PLUGMQ_TEST_DEPS=1 scripts/bootstrap.sh``).
    """
    server = start_postgres()
    if server is None:
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed")
    yield server
    server.remove()


@pytest.fixture
def pg_schema(request: pytest.FixtureRequest) -> str:
    """A schema name of this test's own (``--pg-schema``): tests share one server."""
    digits = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())
    return f"t_{digits[-40:]}_{abs(hash(request.node.nodeid)) % 10**8}"


@pytest.fixture(scope="session")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zookeeper.ZooKeeperEnsemble]:
    """One standalone ZooKeeper for the session, shared by the ha_zk and discovery tests (each
    test uses a ZooKeeper path of its own)."""
    if not zookeeper.available():
        pytest.skip("Debian's zookeeper package is not installed (scripts/bootstrap.sh)")
    ensemble = zookeeper.ZooKeeperEnsemble(tmp_path_factory.mktemp("zookeeper")).start()
    yield ensemble
    ensemble.stop()
