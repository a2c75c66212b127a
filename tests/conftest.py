"""Fixtures for the whole suite: real broker processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.broker_process import BrokerProcess, broker_process


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
