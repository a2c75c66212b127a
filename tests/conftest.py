"""Fixtures for the whole suite: real broker processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.broker_process import BrokerProcess, broker_process
from support.failover_group import FailoverGroup, ToyHAMode
from support.ledger import Ledger


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
